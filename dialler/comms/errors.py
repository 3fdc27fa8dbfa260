"""Domain errors of SMS and magic links.

Each carries a stable ``code`` and a message safe to show to an agent (or, for magic links, to the
portal): never a phone number, a message body or a token. The API maps them to HTTP statuses.
"""

from __future__ import annotations

from typing import Any


class CommsError(Exception):
    code = "comms_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- Composing a text ------------------------------------------------------------------------------


class InvalidSmsBody(CommsError):
    code = "invalid_sms_body"


class SmsTooLong(CommsError):
    code = "sms_too_long"


class TemplateError(CommsError):
    code = "invalid_template"


# --- Who may receive it ----------------------------------------------------------------------------


class CustomerNotFound(CommsError):
    code = "customer_not_found"


class NoMobileNumber(CommsError):
    code = "no_mobile_number"

    def __init__(self) -> None:
        super().__init__("The customer has no UK mobile number on file: texts can only go to a mobile.")


class OptedOut(CommsError):
    code = "opted_out"

    def __init__(self, why: str = "the customer opted out of texts (STOP)") -> None:
        super().__init__(f"No text may be sent: {why}.")


class ConversationNotFound(CommsError):
    code = "conversation_not_found"

    def __init__(self) -> None:
        super().__init__("No such conversation.")


# --- Magic links -----------------------------------------------------------------------------------


class InvalidMagicLinkTarget(CommsError):
    """The claim or requirement is not this customer's, or there is nothing to sign or upload."""

    code = "invalid_magic_link_target"


class MagicLinkNotFound(CommsError):
    """Unknown, malformed or tampered token: one answer for all three (no oracle for guessing)."""

    code = "magic_link_not_found"

    def __init__(self) -> None:
        super().__init__("This link is not valid.")


class MagicLinkUsed(CommsError):
    code = "magic_link_used"

    def __init__(self) -> None:
        super().__init__("This link has already been used.")


class MagicLinkExpired(CommsError):
    code = "magic_link_expired"

    def __init__(self) -> None:
        super().__init__("This link has expired.")
