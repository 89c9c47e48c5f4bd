"""Use cases of the gateway's certificate authority: issue, revoke, sessions."""
