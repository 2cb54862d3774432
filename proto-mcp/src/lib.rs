//! Sans-IO MCP protocol pieces (JSON-RPC 2.0, transports). Filled in by the MCP issue.
#![forbid(unsafe_code)]
