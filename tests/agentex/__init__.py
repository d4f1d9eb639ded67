"""Programs run by the agentex-sdk environment (`.venv-agentex`, Python 3.12, made by
`make agentex-venv`): the tests in tests/client/test_agentex*.py start them. They import
agentex and sidecar_client only (the server is not installed there)."""
