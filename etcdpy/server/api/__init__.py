"""The client-facing gRPC servicers: thin, validate, fill headers, map errors."""
