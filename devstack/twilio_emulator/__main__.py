"""``python -m devstack.twilio_emulator --port 4010``: the Twilio emulator as its own process.

Defaults match the product's development settings (``dialler/config.py``), so ``make run`` works
with nothing set: account ``AC000…0``, auth token ``dev-twilio-auth-token`` (signs webhooks), API key
``SK000…0`` / ``dev-twilio-api-secret``.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from devstack.twilio_emulator.app import build_app
from devstack.twilio_emulator.engine import Emulator

DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_API_KEY = "SK00000000000000000000000000000000:dev-twilio-api-secret"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.twilio_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    parser.add_argument("--account-sid", default=DEV_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEV_AUTH_TOKEN)
    parser.add_argument(
        "--api-key", action="append", default=None, metavar="SID:SECRET", help="API key accepted for REST auth"
    )
    parser.add_argument("--public-url", help="base URL the emulator is reached at (recording URLs)")
    parser.add_argument("--voice-url", help="where inbound calls to any of our numbers are posted")
    parser.add_argument("--sms-url", help="where inbound SMS to any of our numbers are posted")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="a UI origin whose browser phones may register (default: any http origin on this machine)",
    )
    parser.add_argument("--no-demo-rules", action="store_true", help="every number answers unless scripted")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keys = dict(key.split(":", 1) for key in (args.api_key or [DEV_API_KEY]))
    emulator = Emulator(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        public_url=args.public_url or f"http://{args.host}:{args.port}",
        api_keys=keys,
        default_voice_url=args.voice_url,
        default_sms_url=args.sms_url,
        demo_rules=not args.no_demo_rules,
    )
    uvicorn.run(
        build_app(emulator, cors_origins=args.cors_origin or ()),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
