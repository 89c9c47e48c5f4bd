"""Keep secrets out of log lines, whichever library writes them.

botocore at debug level logs every request and response whole: RunInstances' UserData (base64)
on the way out, DescribeInstanceAttribute's userData on the way back. A filter on the log
handler scrubs those and any private-key block from every record before it is written.
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"

_PATTERNS = (
    # Query-protocol request bodies: ...&UserData=BASE64&...
    re.compile(r"(UserData=)[^&'\"\s]+"),
    # Request dicts: 'UserData': '...' (also "UserData": {...})
    re.compile(r"""(['"]UserData['"]\s*:\s*)(\{[^}]*\}|'[^']*'|"[^"]*")"""),
    # XML response bodies: <userData><value>...</value></userData>
    re.compile(r"(<userData>).*?(?=</userData>)", re.S | re.I),
    re.compile(r"(-----BEGIN [A-Z ]*PRIVATE KEY-----).*?(?=-----END)", re.S),
)


def scrub(text: str) -> str:
    """Return `text` with user data and private-key material replaced by a marker."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter that scrubs every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
