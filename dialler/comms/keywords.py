"""What an inbound text asks for: opt out, opt back in, cancel the callback, or nothing (a message).

Pure functions, no I/O. The rules, in order:

1. The body is normalised: Unicode NFKC, upper case, punctuation, symbols and emoji around and between
   words dropped ("Stop!!", "stop.", "STOP 🛑" all read ``STOP``).
2. **Opt-out** keywords, as the whole message: ``STOP``, ``STOPALL``/``STOP ALL``, ``UNSUBSCRIBE``,
   ``END``, ``QUIT``, ``OPTOUT``/``OPT OUT``, ``REVOKE`` (Twilio's and the CTIA's list). Also any short
   message (at most :data:`LOOSE_MAX_WORDS` words) holding ``STOP``, ``STOPALL``, ``UNSUBSCRIBE`` or
   ``OPT OUT`` as a word ("stop texting me", "please unsubscribe"): a customer who wants us gone must
   not have to guess the magic word. This errs on the side of opting out ("don't stop" opts out); the
   confirmation tells them how to opt back in.
3. **CANCEL** — Twilio counts it as an opt-out keyword, but our callback texts say "Reply CANCEL to
   cancel it". So: when the last text we sent to the number was about a callback (confirmation,
   reminder, or the acknowledgement of a cancel), ``CANCEL`` (alone, or in a short message such as
   "cancel please") cancels the live callback and never opts out; if no callback is live any more, it
   is just shown to agents. Otherwise a bare ``CANCEL`` is an opt-out, as the carriers expect.
4. **Opt-in**: ``START`` or ``UNSTOP`` as the whole message, from an opted-out number. From a number
   that is not opted out, it is an ordinary message. (``YES``, also opt-in for Twilio, stays an
   ordinary message: it is far more often an answer to an agent's question.)
5. Anything else (``HELP`` included) is a message for the agents.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Final

from dialler.comms.templates import CALLBACK_TEMPLATES

__all__ = ["InboundAction", "classify", "normalise", "opt_out_keyword"]

OPT_OUT_KEYWORDS: Final = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "OPTOUT", "REVOKE"})
LOOSE_OPT_OUT_WORDS: Final = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT"})
OPT_IN_KEYWORDS: Final = frozenset({"START", "UNSTOP"})
CANCEL: Final = "CANCEL"
LOOSE_MAX_WORDS: Final = 6
_JOINED: Final = {("STOP", "ALL"): "STOPALL", ("OPT", "OUT"): "OPTOUT"}
_WORD: Final = re.compile(r"[A-Z0-9']+")


class InboundAction(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    CANCEL_CALLBACK = "cancel_callback"
    MESSAGE = "message"


def normalise(body: str) -> list[str]:
    """The message's words, upper-cased, with the two-word keywords joined (``OPT OUT`` → ``OPTOUT``)."""
    words = _WORD.findall(unicodedata.normalize("NFKC", body).upper())
    joined: list[str] = []
    for word in words:
        if joined and (joined[-1], word) in _JOINED:
            joined[-1] = _JOINED[(joined[-1], word)]
        else:
            joined.append(word)
    return joined


def opt_out_keyword(body: str) -> str | None:
    """The opt-out keyword ``body`` carries (rule 2), or None. ``CANCEL`` is not decided here."""
    words = normalise(body)
    if len(words) == 1 and words[0] in OPT_OUT_KEYWORDS:
        return words[0]
    if 0 < len(words) <= LOOSE_MAX_WORDS:
        for word in words:
            if word in LOOSE_OPT_OUT_WORDS:
                return word
    return None


def classify(body: str, *, opted_out: bool, last_outbound_template: str | None, live_callback: bool) -> InboundAction:
    """What to do with an inbound text (see the module docstring for the rules).

    ``last_outbound_template``: the template of the last text we sent to this number (None for free
    text or none at all); ``live_callback``: whether the customer has a booked callback still to come.
    """
    if opt_out_keyword(body) is not None:
        return InboundAction.OPT_OUT
    words = normalise(body)
    replying_to_callback = last_outbound_template in CALLBACK_TEMPLATES
    if CANCEL in words and replying_to_callback and len(words) <= LOOSE_MAX_WORDS:
        return InboundAction.CANCEL_CALLBACK if live_callback else InboundAction.MESSAGE
    if words == [CANCEL]:
        return InboundAction.OPT_OUT
    if len(words) == 1 and words[0] in OPT_IN_KEYWORDS and opted_out:
        return InboundAction.OPT_IN
    return InboundAction.MESSAGE


def keyword_of(body: str) -> str:
    """The keyword to record with an opt-out (``opt_outs.keyword``, 16 characters at most)."""
    return (opt_out_keyword(body) or (CANCEL if CANCEL in normalise(body) else "STOP"))[:16]
