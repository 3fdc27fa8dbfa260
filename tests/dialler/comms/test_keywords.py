"""Inbound keywords: opt-out, opt-in, CANCEL in reply to a callback text, or a message for agents."""

from __future__ import annotations

import pytest

from dialler.comms.keywords import InboundAction, classify, keyword_of, opt_out_keyword

OPT_OUT, OPT_IN, CANCEL, MESSAGE = (
    InboundAction.OPT_OUT,
    InboundAction.OPT_IN,
    InboundAction.CANCEL_CALLBACK,
    InboundAction.MESSAGE,
)


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        " Stop. ",
        "STOP!!!",
        "stop 🛑",
        "StopAll",
        "stop all",
        "UNSUBSCRIBE",
        "end",
        "Quit",
        "opt out",
        "OPTOUT",
        "revoke",
        "Ｓｔｏｐ",  # full-width letters (NFKC)
        "stop texting me",
        "please stop",
        "Unsubscribe me please",
        "STOP calling me now thanks",
    ],
)
def test_opt_out_keywords(body: str) -> None:
    assert classify(body, opted_out=False, last_outbound_template=None, live_callback=False) is OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "End of the day works for me",  # END counts only alone
        "I will quit my job soon",
        "call me tomorrow at 10",
        "Yes",
        "HELP",
        "",
        "please don't stop, I really do want you to call me back tomorrow",  # long: a conversation
        "stopped by the bank",
    ],
)
def test_ordinary_messages(body: str) -> None:
    assert classify(body, opted_out=False, last_outbound_template=None, live_callback=False) is MESSAGE


def test_cancel_is_an_opt_out_unless_it_answers_a_callback_text() -> None:
    assert classify("CANCEL", opted_out=False, last_outbound_template=None, live_callback=True) is OPT_OUT
    assert classify("cancel", opted_out=False, last_outbound_template="missed_call", live_callback=True) is OPT_OUT
    for template in ("callback_confirmation", "callback_reminder", "callback_cancelled"):
        assert classify("CANCEL", opted_out=False, last_outbound_template=template, live_callback=True) is CANCEL
        assert classify("cancel please", opted_out=False, last_outbound_template=template, live_callback=True) is CANCEL
        # The callback is over: never an opt-out, just shown to the agents.
        assert classify("Cancel", opted_out=False, last_outbound_template=template, live_callback=False) is MESSAGE
    # A short message that says STOP is an opt-out even in reply to a callback text.
    assert (
        classify("cancel and stop", opted_out=False, last_outbound_template="callback_reminder", live_callback=True)
        is OPT_OUT
    )
    # "cancel my claim" without a callback text: a message, not an opt-out (only a bare CANCEL is).
    assert classify("cancel my claim", opted_out=False, last_outbound_template=None, live_callback=False) is MESSAGE


def test_start_opts_back_in_only_an_opted_out_number() -> None:
    assert classify("START", opted_out=True, last_outbound_template=None, live_callback=False) is OPT_IN
    assert classify("unstop", opted_out=True, last_outbound_template=None, live_callback=False) is OPT_IN
    assert classify("Start", opted_out=False, last_outbound_template=None, live_callback=False) is MESSAGE
    assert classify("yes", opted_out=True, last_outbound_template=None, live_callback=False) is MESSAGE
    assert classify("start calling me", opted_out=True, last_outbound_template=None, live_callback=False) is MESSAGE


def test_the_recorded_keyword() -> None:
    assert opt_out_keyword("stop all") == "STOPALL"
    assert keyword_of("please unsubscribe me") == "UNSUBSCRIBE"
    assert keyword_of("CANCEL") == "CANCEL"
