"""The HTTP servers' OpenAPI 3.1 document: what docs/protocol.md says, for machines.

Served at ``/openapi.json`` by every HTTP transport: the routes all of them share (the prompt
POST, health, metrics) plus the read route of that transport (``paths`` of its module). The
schemathesis tests hold each server to it: every answer is one this document lists. WebSocket
upgrades and gRPC are outside what OpenAPI describes; their contract tests are in
tests/test_contract.py.
"""

from __future__ import annotations

from typing import Any

from servers.tokens.core import MAX_BATCH, MAX_PROMPT_BYTES, MAX_RATE, MAX_TOKENS

JSON = "application/json"
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}
TOKEN: dict[str, Any] = {
    "type": "object",
    "required": ["seq", "t", "text"],
    "properties": {
        "seq": {"type": "integer", "minimum": 0},
        "t": {"type": "integer"},
        "text": {"type": "string"},
    },
}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR}}}


def stream_id() -> dict[str, Any]:
    return {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}


READ_ERRORS = {
    "404": error("unknown stream id"),
    "410": error("past the stream's replay window"),
    "422": error("a bad resume point or parameter"),
}

COMMON: dict[str, Any] = {
    "/v1/streams": {
        "post": {
            "summary": "The prompt POST: create a stream (an answer) and start its clock",
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "prompt": {"type": "string", "maxLength": MAX_PROMPT_BYTES // 4},
                                "tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS},
                                "rate": {
                                    "type": "number",
                                    "exclusiveMinimum": 0,
                                    "maximum": MAX_RATE,
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": {
                    "description": "created",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["id", "tokens", "rate", "created_ns"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "tokens": {"type": "integer"},
                                    "rate": {"type": "number"},
                                    "created_ns": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "413": error("body over 64 KiB"),
                "422": error("a bad field, or a body that is not a JSON object"),
            },
        }
    },
    "/v1/streams/{sid}/stop": {
        "post": {
            "summary": "The stop button: end the answer where its generation is now",
            "parameters": [stream_id()],
            "responses": {
                "202": {
                    "description": "stopping: every reader gets the end, with `stopped`",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {"id": {"type": "string"}},
                            }
                        }
                    },
                },
                "404": error("unknown stream id (or, replay pod, held by another backend)"),
                "410": error("past the stream's replay window"),
                "503": error("the model is unreachable"),
            },
        }
    },
    "/v1/time": {
        "get": {
            "responses": {
                "200": {
                    "description": "the server's wall clock, ns since the Unix epoch",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["t_ns"],
                                "properties": {"t_ns": {"type": "integer"}},
                            }
                        }
                    },
                }
            }
        }
    },
    "/healthz": {
        "get": {
            "responses": {
                "200": {
                    "description": "serving",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["status", "transport"],
                                "properties": {
                                    "status": {"const": "ok"},
                                    "transport": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            }
        }
    },
    "/metrics": {
        "get": {
            "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}}
        }
    },
}

POLL_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["tokens", "end"],
    "properties": {
        "tokens": {"type": "array", "items": TOKEN, "maxItems": MAX_BATCH},
        "end": {"type": "boolean"},
        "stopped": {"type": "integer", "description": "with end: when the user stopped it"},
    },
}


def document(title: str, paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": {**COMMON, **paths},
    }
