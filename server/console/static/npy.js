// NumPy's .npy format, read: the arrays `numpy.save` writes (little-endian floats or signed integers,
// C order), as { shape, data: a flat array of numbers }. Anything else is refused, saying what it is.

const MAGIC = "\x93NUMPY";
const VERSIONS = { 1: [2, 10], 2: [4, 12], 3: [4, 12] }; // the header length's size, where the header starts
const TYPES = {
  "<f4": Float32Array,
  "<f8": Float64Array,
  "|i1": Int8Array,
  "<i2": Int16Array,
  "<i4": Int32Array,
  "<i8": BigInt64Array,
};
const TAKEN = "float32, float64 or signed integers";

export function readNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (String.fromCharCode(...bytes.slice(0, 6)) !== MAGIC) throw new Error("not a .npy file (no \\x93NUMPY at its start)");
  if (!(bytes[6] in VERSIONS)) throw new Error(`.npy format version ${bytes[6]} is not read here (1 to 3 are)`);
  const [lengthBytes, start] = VERSIONS[bytes[6]];
  if (buffer.byteLength < start) throw new Error("the .npy file ends inside its header");
  const view = new DataView(buffer);
  const headerLength = lengthBytes === 2 ? view.getUint16(8, true) : view.getUint32(8, true);
  const header = new TextDecoder("latin1").decode(bytes.slice(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new Error("the .npy header has no descr or shape");
  if (descr.startsWith(">")) throw new Error(`the .npy array is big-endian (${descr}): save x.astype("<${descr.slice(1)}")`);
  if (!(descr in TYPES)) throw new Error(`.npy of dtype ${descr} is not read here: save ${TAKEN}`);
  if (/'fortran_order':\s*True/.test(header)) throw new Error("the .npy array is in Fortran order: save numpy.ascontiguousarray(x)");
  const shape = shapeText.split(",").map((part) => part.trim()).filter(Boolean).map(Number);
  if (!shape.every((size) => Number.isSafeInteger(size) && size >= 0)) throw new Error(`the .npy shape (${shapeText}) is not a shape`);
  const Type = TYPES[descr];
  const size = shape.reduce((product, length) => product * length, 1) * Type.BYTES_PER_ELEMENT;
  const offset = start + headerLength;
  // Checked before anything is made of it: a header may claim any shape.
  if (buffer.byteLength - offset !== size) throw new Error(`the .npy file has ${buffer.byteLength - offset} bytes of data; its shape says ${size}`);
  const data = Array.from(new Type(buffer.slice(offset)), Number);
  if (!data.every(Number.isFinite)) throw new Error("the .npy array holds NaN or infinity, which an input cannot");
  return { shape, data };
}
