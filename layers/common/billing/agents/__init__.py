"""The MCP server for agents (DESIGN.md section 11)."""
