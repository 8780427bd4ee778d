"""An OTLP/HTTP collector for the tests: decodes each POST to /v1/traces and /v1/logs with the
OpenTelemetry project's own protobuf definitions (PyPI opentelemetry-proto) and appends every span
and log record as one JSON line to the file it was given, with the raw bodies beside it.

Usage: otlp_receiver.py OUT_JSONL RAW_BODIES; prints the port it listens on, then serves.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

OUT, RAW = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def spans(body):
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "signal": "span",
                    "resource": resource,
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": Span.SpanKind.Name(s.kind),
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": Status.StatusCode.Name(s.status.code),
                    "attributes": attributes(s.attributes),
                }


def logs(body):
    req = ExportLogsServiceRequest()
    req.ParseFromString(body)
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                yield {
                    "signal": "log",
                    "resource": resource,
                    "trace_id": r.trace_id.hex(),
                    "event_name": r.event_name,
                    "severity_text": r.severity_text,
                    "time": r.time_unix_nano,
                    "body": value(r.body),
                }


ROUTES = {
    "/v1/traces": (spans, ExportTraceServiceResponse),
    "/v1/logs": (logs, ExportLogsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        route = ROUTES.get(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if route is None or self.headers.get("content-type") != "application/x-protobuf":
            self.send_response(404 if route is None else 415)
            self.end_headers()
            return
        decode, response = route
        records = list(decode(body))
        with LOCK:
            with open(RAW, "ab") as raw:
                raw.write(body)
            with open(OUT, "a") as out:
                for r in records:
                    out.write(json.dumps(r) + "\n")
        answer = response().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
