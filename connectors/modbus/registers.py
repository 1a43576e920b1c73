"""Modbus register semantics as data: one table (``DATA_TYPE_SPECS``) drives config validation, decoding
of read registers and encoding of writes. Byte order (within a 16-bit register) and word order (of the
registers of one value) are independent, because devices in the field combine them every way.

Beside the numeric types (adr/0151): ``string`` (N registers of text, NUL/space padded), ``bit`` (one bit
of a holding/input register, read only) and ``bcd16``/``bcd32`` (binary-coded decimal, one digit a nibble)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class RegisterType(StrEnum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.HOLDING)


class DataType(StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BIT = "bit"
    BCD16 = "bcd16"
    BCD32 = "bcd32"


class ByteOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


class WordOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


class Kind(StrEnum):
    COIL = "coil"  # a coil or discrete input: one bit of its own
    NUMBER = "number"  # struct-packed integer or float
    STRING = "string"
    REGISTER_BIT = "register_bit"
    BCD = "bcd"


@dataclass(frozen=True, slots=True)
class DataTypeSpec:
    struct_code: str | None  # None: not struct-packed (see kind)
    registers: int  # 16-bit registers (or bits) one value occupies; string: 0, the point's ``length`` says
    register_types: frozenset[RegisterType]
    integer: bool  # writes must be whole raw counts (never rounded)
    kind: Kind = Kind.NUMBER

    @property
    def orders_apply(self) -> bool:
        """Byte/word order mean something only for register-backed types (word order: multi-register)."""
        return self.kind in (Kind.NUMBER, Kind.STRING, Kind.BCD)

    @property
    def writable(self) -> bool:
        # a bit inside a register would need a read-modify-write that races the PLC's own writes
        return self.kind is not Kind.REGISTER_BIT


_REGS = frozenset({RegisterType.HOLDING, RegisterType.INPUT})
_BITS = frozenset({RegisterType.COIL, RegisterType.DISCRETE_INPUT})

DATA_TYPE_SPECS: dict[DataType, DataTypeSpec] = {
    DataType.BOOL: DataTypeSpec(None, 1, _BITS, False, Kind.COIL),
    DataType.INT16: DataTypeSpec("h", 1, _REGS, True),
    DataType.UINT16: DataTypeSpec("H", 1, _REGS, True),
    DataType.INT32: DataTypeSpec("i", 2, _REGS, True),
    DataType.UINT32: DataTypeSpec("I", 2, _REGS, True),
    DataType.INT64: DataTypeSpec("q", 4, _REGS, True),
    DataType.UINT64: DataTypeSpec("Q", 4, _REGS, True),
    DataType.FLOAT32: DataTypeSpec("f", 2, _REGS, False),
    DataType.FLOAT64: DataTypeSpec("d", 4, _REGS, False),
    DataType.STRING: DataTypeSpec(None, 0, _REGS, False, Kind.STRING),
    DataType.BIT: DataTypeSpec(None, 1, _REGS, False, Kind.REGISTER_BIT),
    DataType.BCD16: DataTypeSpec(None, 1, _REGS, True, Kind.BCD),
    DataType.BCD32: DataTypeSpec(None, 2, _REGS, True, Kind.BCD),
}
MAX_STRING_REGISTERS = 125  # one read request

# Modbus protocol limits on one read request (registers, bits)
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


def _to_bytes(words: Sequence[int], byte_order: ByteOrder, word_order: WordOrder) -> bytes:
    ordered = list(words) if word_order is WordOrder.BIG else list(reversed(words))
    return b"".join(w.to_bytes(2, "big" if byte_order is ByteOrder.BIG else "little") for w in ordered)


def _words_ok(registers: Sequence[int], data_type: DataType) -> None:
    if not all(type(w) is int and 0 <= w <= 0xFFFF for w in registers):
        raise ValueError(f"{data_type}: registers must be 16-bit words, got {list(registers)!r:.80}")


def decode_registers(registers: Sequence[int], data_type: DataType, byte_order: ByteOrder = ByteOrder.BIG,
                     word_order: WordOrder = WordOrder.BIG, *, bit: int = 0) -> int | float | bool | str:
    """The value held by ``registers`` (exactly the type's register count, any count ≥ 1 for ``string``; bits
    for ``bool``). Raises ValueError, and only that, when they cannot hold one: a wrong count, a word outside
    0..0xFFFF, text that is not UTF-8, a nibble above 9 in BCD."""
    spec = DATA_TYPE_SPECS[data_type]
    if spec.kind is Kind.STRING:
        if not registers:
            raise ValueError("string needs at least 1 register")
    elif len(registers) != spec.registers:
        raise ValueError(f"{data_type} needs {spec.registers} registers, got {len(registers)}")
    if spec.kind is Kind.COIL:
        return bool(registers[0])
    _words_ok(registers, data_type)
    if spec.kind is Kind.REGISTER_BIT:
        return bool((registers[0] >> bit) & 1)
    if spec.kind is Kind.STRING:
        raw = _to_bytes(registers, byte_order, WordOrder.BIG).split(b"\0", 1)[0].rstrip(b" ")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ValueError(f"string: the registers do not hold UTF-8 text: {raw[:40]!r}") from None
    raw = _to_bytes(registers, byte_order, word_order)
    if spec.kind is Kind.BCD:
        digits = raw.hex()
        if not digits.isdigit():
            raise ValueError(f"{data_type}: 0x{digits} is not binary-coded decimal")
        return int(digits)
    return struct.unpack(">" + spec.struct_code, raw)[0]


def encode_value(value: int | float | bool | str, data_type: DataType, byte_order: ByteOrder = ByteOrder.BIG,
                 word_order: WordOrder = WordOrder.BIG, *, length: int | None = None) -> list[int]:
    """The registers (or the one bit) that hold ``value``; raises ValueError when it does not fit exactly:
    an integer type is never given a rounded value, a string never a truncated one."""
    spec = DATA_TYPE_SPECS[data_type]
    if spec.kind is Kind.COIL:
        return [int(bool(value))]
    if spec.kind is Kind.REGISTER_BIT:
        raise ValueError("a bit inside a register cannot be written (read-modify-write would race the device)")
    if spec.kind is Kind.STRING:
        if not isinstance(value, str):
            raise ValueError("string: the value must be text")
        n = length or 1
        data = value.encode()
        if len(data) > 2 * n:
            raise ValueError(f"{len(data)} bytes of text do not fit {n} registers ({2 * n} bytes)")
        words = [int.from_bytes(data.ljust(2 * n, b"\0")[i:i + 2], "big") for i in range(0, 2 * n, 2)]
        return words if byte_order is ByteOrder.BIG else [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if spec.integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not a whole number: {data_type} holds whole raw counts")
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{data_type} needs a number")
    if spec.kind is Kind.BCD:
        digits = 4 * spec.registers
        if not 0 <= value < 10 ** digits:
            raise ValueError(f"{value!r} does not fit {data_type} (0..{10 ** digits - 1})")
        packed = bytes.fromhex(f"{value:0{digits}d}")
    else:
        try:
            packed = struct.pack(">" + spec.struct_code, value)
        except struct.error as exc:
            raise ValueError(f"{value!r} does not fit {data_type}: {exc}") from None
    words = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
    if byte_order is ByteOrder.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words if word_order is WordOrder.BIG else list(reversed(words))
