"""The sandbox payment aggregator: its own process on loopback (`pos-ledger psp-sandbox`).

It speaks HTTP + JSON like a real aggregator modelled on WeChat Pay API v3, routes
to the wechat / alipay / unionpay channels, and signs its asynchronous
notifications with RSA-SHA256 as WeChat Pay v3 does: headers `Wechatpay-Timestamp`,
`Wechatpay-Nonce`, `Wechatpay-Serial`, `Wechatpay-Signature` = base64 of the
PKCS#1 v1.5 SHA-256 signature of "timestamp\\nnonce\\nbody\\n". The public key is
served at `GET /v3/certificates`. Unlike WeChat Pay the notification resource is
not AES-GCM encrypted (the sandbox has no merchant API v3 key).

Every answer to a well-formed request is HTTP 200 with a `code`: "SUCCESS",
"FAIL" (a business failure inside HTTP 200), "DECLINED" or "USERPAYING".

Magic amounts (the last two digits of `amount_minor`), as payment sandboxes do:

| ends in | create QR / charge code |
|---|---|
| 01 | business failure: HTTP 200 `{"code": "FAIL"}`, no trade |
| 02 | declined: HTTP 200 `{"code": "DECLINED"}`, trade PAYERROR |
| 03 | the trade succeeds (charge) / opens (QR) at once, but the answer comes only after `--delay-seconds`, past the client's timeout: the server must query |
| 04 | charge only: `USERPAYING`; the customer confirms after `--delay-seconds`, then a signed notification is sent |

`POST /v3/pay/transactions/out-trade-no/{id}/close` closes an unpaid trade (it can
no longer be paid). Sandbox controls (no real provider has these): `POST /sandbox/trades/{id}/pay`
(`{"channel": ...}`: the customer scans the QR and pays; the notification is
sent before answering), `POST /sandbox/trades/{id}/notify` (send the last
notification again: a duplicate callback), `GET /sandbox/notifications` (what was
sent, headers and body, for replay tests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger("pos_ledger.psp_sandbox")

BODY_BYTES_MAX: Final = 64 * 1024
TRADES_MAX: Final = 100_000
NOTIFICATIONS_KEPT_MAX: Final = 1_000
NOTIFY_ATTEMPTS_MAX: Final = 3
NOTIFY_TIMEOUT_S: Final = 5.0
#: How long magic amounts ..03 / ..04 keep a client waiting: past the server's provider timeout
#: (`aggregator.DEFAULT_TIMEOUT_S`), so ..03 makes it query before deciding.
DELAY_S_DEFAULT: Final = 8.0
CHANNELS: Final = ("wechat", "alipay", "unionpay")
#: WeChat Pay: at most 50 partial refunds per order.
WECHAT_REFUNDS_MAX: Final = 50


def signature_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def key_serial(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:40].upper()


@dataclass
class Trade:
    out_trade_no: str
    amount_minor: int
    currency: str
    channel: str | None
    notify_url: str
    state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: str = ""
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def refunded_minor(self) -> int:
        return sum(int(r["amount"]) for r in self.refunds.values())


class Sandbox:
    """The aggregator's state and behaviour, independent of HTTP."""

    def __init__(self, delay_s: float = DELAY_S_DEFAULT, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self.delay_s = delay_s
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.serial = key_serial(self.private_key.public_key())
        self.trades: dict[str, Trade] = {}
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def public_key_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    # ---- trades ----

    def _new_trade(self, body: dict[str, Any], channel: str | None) -> Trade:
        amount = body["amount"]
        trade = Trade(str(body["out_trade_no"]), int(amount["total"]), str(amount.get("currency", "CNY")),
                      channel, str(body.get("notify_url", "")))
        with self.lock:
            if trade.out_trade_no in self.trades:
                raise ValueError("duplicate out_trade_no")
            if len(self.trades) >= TRADES_MAX:
                raise ValueError("sandbox is full")
            self.trades[trade.out_trade_no] = trade
        return trade

    def _succeed(self, trade: Trade, channel: str) -> bool:
        """Pay the trade; False when it was closed (or failed) first."""
        with self.lock:
            if trade.state == "SUCCESS":
                return True
            if trade.state not in ("NOTPAY", "USERPAYING"):
                return False
            trade.state = "SUCCESS"
            trade.channel = channel
            trade.transaction_id = "42" + secrets.token_hex(12)
            trade.success_time = datetime.now(UTC).isoformat()
            return True

    def close(self, trade: Trade) -> dict[str, Any]:
        with self.lock:
            if trade.state in ("NOTPAY", "USERPAYING"):
                trade.state = "CLOSED"
        return self.trade_view(trade)

    def native(self, body: dict[str, Any]) -> dict[str, Any]:
        magic = int(body["amount"]["total"]) % 100
        if magic == 1:
            return {"code": "FAIL", "message": "SYSTEMERROR: sandbox business failure (amount ends in 01)"}
        channel = body.get("channel")
        trade = self._new_trade(body, channel if channel in CHANNELS else None)
        if magic == 2:
            trade.state = "PAYERROR"
            return {"code": "DECLINED", "message": "RULELIMIT: sandbox risk control (amount ends in 02)"}
        if magic == 3:
            time.sleep(self.delay_s)
        code_url = f"weixin://wxpay/bizpayurl?pr={trade.out_trade_no}" if channel == "wechat" else None
        return {"code": "SUCCESS", "code_url": code_url}

    def codepay(self, body: dict[str, Any]) -> dict[str, Any]:
        magic = int(body["amount"]["total"]) % 100
        channel = str(body.get("channel") or "")
        if channel not in CHANNELS or not str(body.get("payer", {}).get("auth_code", "")).isdigit():
            return {"code": "FAIL", "message": "AUTH_CODE_INVALID: unknown payment code"}
        if magic == 1:
            return {"code": "FAIL", "message": "SYSTEMERROR: sandbox business failure (amount ends in 01)"}
        trade = self._new_trade(body, channel)
        if magic == 2:
            trade.state = "PAYERROR"
            return {"code": "DECLINED", "message": "NOTENOUGH: insufficient balance (amount ends in 02)"}
        if magic == 4:
            trade.state = "USERPAYING"
            threading.Timer(self.delay_s, self._confirm_later, args=(trade, channel)).start()
            return {"code": "USERPAYING", "message": "the customer is entering the password"}
        self._succeed(trade, channel)
        if magic == 3:
            time.sleep(self.delay_s)
        return self.trade_view(trade)

    def _confirm_later(self, trade: Trade, channel: str) -> None:
        if self._succeed(trade, channel):
            self.notify(trade)

    def trade_view(self, trade: Trade) -> dict[str, Any]:
        return {"code": "SUCCESS", "out_trade_no": trade.out_trade_no, "trade_state": trade.state,
                "transaction_id": trade.transaction_id, "channel": trade.channel,
                "success_time": trade.success_time,
                "amount": {"total": trade.amount_minor, "currency": trade.currency}}

    def refund(self, body: dict[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(str(body.get("out_trade_no")))
        if trade is None or trade.state != "SUCCESS":
            return {"code": "FAIL", "message": "RESOURCE_NOT_EXISTS: no paid trade"}
        out_refund_no = str(body["out_refund_no"])
        amount = int(body["amount"]["refund"])
        with self.lock:
            earlier = trade.refunds.get(out_refund_no)
            if earlier is not None:
                same = earlier["amount"] == amount
                return earlier["view"] if same else {"code": "FAIL", "message": "INVALID_REQUEST: out_refund_no reused"}
            if amount <= 0 or trade.refunded_minor + amount > trade.amount_minor:
                return {"code": "FAIL", "message": "NOT_ENOUGH: refund exceeds the paid amount"}
            if trade.channel == "wechat" and len(trade.refunds) >= WECHAT_REFUNDS_MAX:
                return {"code": "FAIL", "message": "FREQUENCY_LIMITED: at most 50 refunds per order"}
            view = {"code": "SUCCESS", "status": "SUCCESS", "refund_id": "50" + secrets.token_hex(12),
                    "out_refund_no": out_refund_no, "amount": {"refund": amount, "total": trade.amount_minor}}
            trade.refunds[out_refund_no] = {"amount": amount, "view": view}
        return view

    # ---- notifications ----

    def signed_notification(self, trade: Trade) -> tuple[dict[str, str], bytes]:
        body = json.dumps({
            "id": secrets.token_hex(16),
            "create_time": datetime.now(UTC).isoformat(),
            "event_type": "TRANSACTION.SUCCESS" if trade.state == "SUCCESS" else "TRANSACTION.FAIL",
            "resource_type": "plain",
            "resource": {k: v for k, v in self.trade_view(trade).items() if k != "code"},
        }, separators=(",", ":")).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = self.private_key.sign(signature_message(timestamp, nonce, body),
                                          padding.PKCS1v15(), hashes.SHA256())
        headers = {"Content-Type": "application/json", "Wechatpay-Timestamp": timestamp,
                   "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.serial,
                   "Wechatpay-Signature": base64.b64encode(signature).decode()}
        return headers, body

    def notify(self, trade: Trade) -> int:
        """Send a fresh signed notification (new nonce); the HTTP status the server answered."""
        headers, body = self.signed_notification(trade)
        with self.lock:
            self.sent.append({"out_trade_no": trade.out_trade_no, "url": trade.notify_url,
                              "headers": headers, "body": body.decode()})
            del self.sent[:-NOTIFICATIONS_KEPT_MAX]
        status = 0
        for attempt in range(NOTIFY_ATTEMPTS_MAX):
            request = urllib.request.Request(trade.notify_url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT_S) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError as error:
                log.warning("notification to %s failed: %s", trade.notify_url, error)
                status = 0
            if 200 <= status < 300:
                break
            time.sleep(0.1 * (attempt + 1))
        return status


class _Handler(BaseHTTPRequestHandler):
    sandbox: Sandbox
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_BYTES_MAX:
            raise ValueError("body too large")
        parsed = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(parsed, dict):
            raise ValueError("body must be a JSON object")
        return parsed

    def do_GET(self) -> None:
        sandbox = self.sandbox
        path = self.path.split("?", 1)[0]
        if path == "/v3/certificates":
            self._answer(200, {"data": [{"serial_no": sandbox.serial, "public_key_pem": sandbox.public_key_pem(),
                                         "algorithm": "RSA-SHA256"}]})
        elif path.startswith("/v3/pay/transactions/out-trade-no/"):
            trade = sandbox.trades.get(path.rsplit("/", 1)[-1])
            if trade is None:
                self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such trade"})
            else:
                self._answer(200, sandbox.trade_view(trade))
        elif path == "/sandbox/notifications":
            self._answer(200, sandbox.sent)
        elif path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"code": "NOT_FOUND", "message": path})

    def do_POST(self) -> None:
        sandbox = self.sandbox
        path = self.path.split("?", 1)[0]
        try:
            body = self._body()
            if path == "/v3/pay/transactions/native":
                self._answer(200, sandbox.native(body))
            elif path == "/v3/pay/transactions/codepay":
                self._answer(200, sandbox.codepay(body))
            elif path == "/v3/refund/domestic/refunds":
                self._answer(200, sandbox.refund(body))
            elif path.startswith("/v3/pay/transactions/out-trade-no/") and path.endswith("/close"):
                trade = sandbox.trades.get(path.split("/")[-2])
                if trade is None:
                    self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such trade"})
                else:
                    self._answer(200, sandbox.close(trade))
            elif path.startswith("/sandbox/trades/"):
                self._control(path, body)
            else:
                self._answer(404, {"code": "NOT_FOUND", "message": path})
        except (ValueError, KeyError, TypeError) as error:
            self._answer(400, {"code": "PARAM_ERROR", "message": str(error)})

    def _control(self, path: str, body: dict[str, Any]) -> None:
        _, _, _, out_trade_no, action = path.split("/", 4)
        trade = self.sandbox.trades.get(out_trade_no)
        if trade is None:
            self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such trade"})
            return
        if action == "pay":
            channel = str(body.get("channel") or trade.channel or "unionpay")
            if channel not in CHANNELS:
                raise ValueError(f"channel must be one of {CHANNELS}")
            if not self.sandbox._succeed(trade, channel):
                self._answer(200, {"code": "FAIL", "message": f"ORDER_CLOSED: the trade is {trade.state}"})
                return
        elif action != "notify":
            raise ValueError(f"unknown action {action!r}")
        status = self.sandbox.notify(trade)
        self._answer(200, {"code": "SUCCESS", "notify_status": status, **self.sandbox.trade_view(trade)})


def make_server(host: str, port: int, delay_s: float) -> tuple[ThreadingHTTPServer, Sandbox]:
    sandbox = Sandbox(delay_s=delay_s)
    handler = type("SandboxHandler", (_Handler,), {"sandbox": sandbox})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server, sandbox


def run(host: str = "127.0.0.1", port: int = 8765, delay_s: float = DELAY_S_DEFAULT, exit_with_stdin: bool = False) -> None:
    server, _ = make_server(host, port, delay_s)
    print(f"psp sandbox listening on http://{host}:{server.server_address[1]}", flush=True)
    if exit_with_stdin:
        threading.Thread(target=_stop_when_stdin_closes, args=(server,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _stop_when_stdin_closes(server: ThreadingHTTPServer) -> None:
    import sys

    while sys.stdin.read(4096):
        pass
    server.shutdown()
