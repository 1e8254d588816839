"""Reaching real sites: gRPC with mutual TLS, chunked safetensors streams, the gRPC connector.

Protobuf appears only in ``serde``; the rest speaks medfed's own types.
"""
