"""The device side of remote profiling: `compofa agent` serves this machine's backends over a byte stream.

A host starts the agent through the user's own ``ssh`` and talks to it over
the agent's stdin and stdout (`protocol`); the agent opens no port.
"""
