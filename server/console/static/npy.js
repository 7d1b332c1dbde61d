// NumPy's .npy format, read: the arrays `numpy.save` writes (little-endian floats or integers, C order),
// as { shape, data: a flat array of numbers }. Anything else is refused, saying what it is.

const MAGIC = "\x93NUMPY";
const TYPES = {
  "<f4": Float32Array,
  "<f8": Float64Array,
  "<i4": Int32Array,
  "<i8": BigInt64Array,
  "<i2": Int16Array,
  "|u1": Uint8Array,
  "|i1": Int8Array,
};

export function readNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (String.fromCharCode(...bytes.slice(0, 6)) !== MAGIC) throw new Error("not a .npy file (no \\x93NUMPY at its start)");
  const major = bytes[6];
  const view = new DataView(buffer);
  const [headerLength, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = new TextDecoder("latin1").decode(bytes.slice(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new Error("the .npy header has no descr or shape");
  if (!(descr in TYPES)) throw new Error(`.npy of dtype ${descr} is not read here: save float32, float64 or integers`);
  if (fortran) throw new Error("the .npy array is in Fortran order: save numpy.ascontiguousarray(x)");
  const shape = shapeText.split(",").map((part) => part.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((product, size) => product * size, 1);
  const offset = start + headerLength;
  const Type = TYPES[descr];
  if (buffer.byteLength - offset < count * Type.BYTES_PER_ELEMENT) throw new Error("the .npy file is shorter than its shape says");
  const typed = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  return { shape, data: Array.from(typed, Number) };
}
