"""Modbus register semantics as data: one table (``DATA_TYPE_SPECS``) drives config validation, decoding
of read registers and encoding of writes. Byte order (within a 16-bit register) and word order (of the
registers of one value) are independent, because devices in the field combine them every way."""

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
    FLOAT32 = "float32"
    FLOAT64 = "float64"


class ByteOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


class WordOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class DataTypeSpec:
    struct_code: str | None  # None: a single bit, no struct
    registers: int  # 16-bit registers (or bits) one value occupies
    register_types: frozenset[RegisterType]
    integer: bool  # writes round and range-check

    @property
    def orders_apply(self) -> bool:
        """Byte/word order mean something only for register-backed types (word order: multi-register)."""
        return self.struct_code is not None


_REGS = frozenset({RegisterType.HOLDING, RegisterType.INPUT})
_BITS = frozenset({RegisterType.COIL, RegisterType.DISCRETE_INPUT})

DATA_TYPE_SPECS: dict[DataType, DataTypeSpec] = {
    DataType.BOOL: DataTypeSpec(None, 1, _BITS, False),
    DataType.INT16: DataTypeSpec("h", 1, _REGS, True),
    DataType.UINT16: DataTypeSpec("H", 1, _REGS, True),
    DataType.INT32: DataTypeSpec("i", 2, _REGS, True),
    DataType.UINT32: DataTypeSpec("I", 2, _REGS, True),
    DataType.FLOAT32: DataTypeSpec("f", 2, _REGS, False),
    DataType.FLOAT64: DataTypeSpec("d", 4, _REGS, False),
}

# Modbus protocol limits on one read request (registers, bits)
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


def _to_bytes(words: Sequence[int], byte_order: ByteOrder, word_order: WordOrder) -> bytes:
    ordered = list(words) if word_order is WordOrder.BIG else list(reversed(words))
    return b"".join(w.to_bytes(2, "big" if byte_order is ByteOrder.BIG else "little") for w in ordered)


def decode_registers(registers: Sequence[int], data_type: DataType, byte_order: ByteOrder = ByteOrder.BIG,
                     word_order: WordOrder = WordOrder.BIG) -> int | float | bool:
    """The value held by ``registers`` (exactly the type's register count; bits for ``bool``). Raises
    ValueError, and only that, when they cannot hold one: a wrong count or a word outside 0..0xFFFF."""
    spec = DATA_TYPE_SPECS[data_type]
    if len(registers) != spec.registers:
        raise ValueError(f"{data_type} needs {spec.registers} registers, got {len(registers)}")
    if spec.struct_code is None:
        return bool(registers[0])
    if not all(type(w) is int and 0 <= w <= 0xFFFF for w in registers):
        raise ValueError(f"{data_type}: registers must be 16-bit words, got {list(registers)!r:.80}")
    return struct.unpack(">" + spec.struct_code, _to_bytes(registers, byte_order, word_order))[0]


def encode_value(value: int | float | bool, data_type: DataType, byte_order: ByteOrder = ByteOrder.BIG,
                 word_order: WordOrder = WordOrder.BIG) -> list[int]:
    """The registers (or the one bit) that hold ``value``; raises ValueError when it does not fit."""
    spec = DATA_TYPE_SPECS[data_type]
    if spec.struct_code is None:
        return [int(bool(value))]
    if spec.integer:
        if isinstance(value, float) and not value.is_integer():
            value = round(value)
        value = int(value)
    try:
        packed = struct.pack(">" + spec.struct_code, value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit {data_type}: {exc}") from None
    words = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
    if byte_order is ByteOrder.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words if word_order is WordOrder.BIG else list(reversed(words))
