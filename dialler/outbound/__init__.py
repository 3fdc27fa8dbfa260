"""Nobody rung (or texted) twice: every call and text we ask the carrier for is written down before we
ask, and a retry asks the carrier what it did with the first request before asking again."""
