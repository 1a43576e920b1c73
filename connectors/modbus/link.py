"""One owner per physical Modbus link: a lock around each request, an optional pause between frames,
reconnect with exponential backoff, and the same error logged once rather than every poll."""

from __future__ import annotations

import asyncio
import logging
import time

try:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException
except ImportError as exc:  # pragma: no cover - an install problem, reported once at start
    raise ImportError("the Modbus connector needs pymodbus: pip install 'fleetstream[modbus]'") from exc

from .registers import RegisterType

log = logging.getLogger(__name__)

EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
              5: "acknowledge", 6: "device busy", 8: "memory parity error", 10: "gateway path unavailable",
              11: "gateway target failed to respond"}


class LinkError(Exception):
    """The read or write did not happen: not connected, timed out, or the device answered an exception."""


class DeviceRefused(LinkError):
    """The device answered with a Modbus exception: ``code`` 1–3 (illegal function, address, value) say the
    request is wrong, others (busy, gateway path unavailable, …) that the moment is."""

    def __init__(self, msg: str, code: int):
        super().__init__(msg)
        self.code = code

    @property
    def request_is_wrong(self) -> bool:
        return self.code in (1, 2, 3)

    @property
    def transient(self) -> bool:
        """Acknowledge, busy, gateway path unavailable, gateway target silent: asking again later may work."""
        return self.code in (5, 6, 10, 11)


class ModbusLink:
    def __init__(self, host: str, port: int, *, timeout_s: float = 3.0, frame_gap_s: float = 0.0,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0):
        self.name = f"{host}:{port}"
        self.frame_gap_s = frame_gap_s
        self._backoff_min, self._backoff_max = reconnect_min_s, reconnect_max_s
        self._backoff = reconnect_min_s
        self._next_attempt = 0.0
        self._lock = asyncio.Lock()
        self._errors: dict[str, str] = {}  # request → its last error, to log each change once
        # our own reconnect policy below; pymodbus's automatic one is off (reconnect_delay=0)
        self._client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        now = time.monotonic()
        if now < self._next_attempt:
            raise LinkError(f"{self.name}: not connected (next attempt in {self._next_attempt - now:.1f}s)")
        ok = False
        try:
            ok = await self._client.connect()
        except Exception as exc:  # connect errors vary by platform; all mean "not now"
            log.debug("connect %s: %s", self.name, exc)
        if not ok:
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            raise LinkError(f"{self.name}: cannot connect")
        self._backoff = self._backoff_min
        self.reconnects += 1
        log.info("modbus link %s connected", self.name)

    async def _call(self, what: str, fn, *args, **kw):
        async with self._lock:
            try:
                await self._ensure_connected()
                rsp = await fn(*args, **kw)
            except LinkError as exc:
                self._note("connect", str(exc))
                raise
            except (TimeoutError, ModbusException, OSError) as exc:
                self._client.close()
                self._note(what, f"{self.name}: {what}: {exc}")
                raise LinkError(f"{self.name}: {what}: {exc}") from exc
            finally:
                if self.frame_gap_s:
                    await asyncio.sleep(self.frame_gap_s)
            if rsp.isError():
                code = int(getattr(rsp, "exception_code", 0) or 0)
                msg = f"{self.name}: {what}: device answered exception {code} ({EXCEPTIONS.get(code, 'unknown')})"
                self._note(what, msg)
                raise DeviceRefused(msg, code)
            self._errors.pop(what, None)
            self._errors.pop("connect", None)
            return rsp

    def _note(self, what: str, msg: str) -> None:
        stable = msg.split(" (next")[0]
        if self._errors.get(what) != stable:
            log.warning("modbus: %s", msg)
        self._errors[what] = stable

    async def read(self, function: RegisterType, address: int, count: int, unit: int) -> list:
        c = self._client
        fn = {RegisterType.HOLDING: c.read_holding_registers, RegisterType.INPUT: c.read_input_registers,
              RegisterType.COIL: c.read_coils, RegisterType.DISCRETE_INPUT: c.read_discrete_inputs}[function]
        rsp = await self._call(f"read {function.value} {address}+{count} unit {unit}", fn, address,
                               count=count, device_id=unit)
        values = rsp.bits if function.is_bit else rsp.registers
        return list(values[:count])

    async def write(self, function: RegisterType, address: int, values: list[int], unit: int) -> None:
        c = self._client
        if function is RegisterType.COIL:
            await self._call(f"write coil {address} unit {unit}", c.write_coil, address, bool(values[0]),
                             device_id=unit)
        elif len(values) == 1:
            await self._call(f"write register {address} unit {unit}", c.write_register, address, values[0],
                             device_id=unit)
        else:
            await self._call(f"write registers {address}+{len(values)} unit {unit}", c.write_registers,
                             address, values, device_id=unit)

    def close(self) -> None:
        self._client.close()
