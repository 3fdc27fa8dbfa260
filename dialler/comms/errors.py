"""Domain errors of SMS and magic links.

Each carries a stable ``code`` and a message safe to show to an agent (or, for magic links, to the
portal): never a phone number, a message body or a token. Each derives from one kind of
:mod:`dialler.errors`, which ``api/errors.py`` maps to HTTP.
"""

from __future__ import annotations

from dialler.errors import Conflict, DiallerError, Gone, Invalid, NotFound


class CommsError(DiallerError):
    code = "comms_error"


# --- Composing a text ------------------------------------------------------------------------------


class InvalidSmsBody(CommsError, Invalid):
    code = "invalid_sms_body"


class SmsTooLong(CommsError, Invalid):
    code = "sms_too_long"


class TemplateError(CommsError, Invalid):
    code = "invalid_template"


# --- Who may receive it ----------------------------------------------------------------------------


class CustomerNotFound(CommsError, NotFound):
    code = "customer_not_found"


class NoMobileNumber(CommsError, Invalid):
    code = "no_mobile_number"

    def __init__(self) -> None:
        super().__init__("The customer has no UK mobile number on file: texts can only go to a mobile.")


class OptedOut(CommsError, Conflict):
    code = "opted_out"

    def __init__(self, why: str = "the customer opted out of texts (STOP)") -> None:
        super().__init__(f"No text may be sent: {why}.")


class ConversationNotFound(CommsError, NotFound):
    code = "conversation_not_found"

    def __init__(self) -> None:
        super().__init__("No such conversation.")


# --- Magic links -----------------------------------------------------------------------------------


class InvalidMagicLinkTarget(CommsError, Invalid):
    """The claim or requirement is not this customer's, or there is nothing to sign or upload."""

    code = "invalid_magic_link_target"


class MagicLinkNotFound(CommsError, NotFound):
    """Unknown, malformed or tampered token: one answer for all three (no oracle for guessing)."""

    code = "magic_link_not_found"

    def __init__(self) -> None:
        super().__init__("This link is not valid.")


class MagicLinkUsed(CommsError, Conflict):
    code = "magic_link_used"

    def __init__(self) -> None:
        super().__init__("This link has already been used.")


class MagicLinkExpired(CommsError, Gone):
    code = "magic_link_expired"

    def __init__(self) -> None:
        super().__init__("This link has expired.")
