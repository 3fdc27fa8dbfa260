"""``make run``'s Temporal dev server starts its Web UI pointed at the API's codec server, so the UI
asks the API to decode what it shows (and the API decides who may see plaintext)."""

from __future__ import annotations

import httpx

from devstack import services
from dialler.config import Settings


def test_the_dev_ui_is_configured_with_the_api_codec_endpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, ui_port, api_port = services.free_port(), services.free_port(), services.free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address=f"127.0.0.1:{port}",
        public_base_url=f"http://127.0.0.1:{api_port}",
    )
    group = services.ProcessGroup(tmp_path / "run", die_with_parent=True)
    try:
        services.start_temporal(group, settings, ui_port=ui_port)
        ui_settings = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10).json()
    finally:
        group.stop_all()

    assert ui_settings["Codec"]["Endpoint"] == f"http://127.0.0.1:{api_port}/codec"
