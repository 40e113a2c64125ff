// Reader of the binary trace form (`.moetrace`, docs/trace-format.md), by its
// documented layout, all integers little-endian:
//   8 bytes  magic "MOETRACE"
//   4 bytes  uint32 H, the header length
//   H bytes  UTF-8 JSON header: the trace without `routing`, plus
//            "arrays": {name: {"dtype", "shape", "offset"}}
//   padding  zeros up to a multiple of 8; then the data section, each array C-ordered
//            at its `offset` from the start of the data section
// Returns the page's in-memory trace (tracecheck.js): the header's fields, and
// routing as flat typed arrays that are views of the file's buffer: nothing is
// copied or reshaped, and RunState.loadTrace takes them as they are.
// Every size is checked before it is read, and problems come back as one-line errors.
import { TraceError, routingK, validateHeader, validateRouting } from "./tracecheck.js";

const MAGIC = "MOETRACE";
const DTYPES = { int16: Int16Array, int32: Int32Array, float32: Float32Array };
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function hasMoetraceMagic(buffer) {
  const b = new Uint8Array(buffer, 0, Math.min(8, buffer.byteLength));
  return b.length === 8 && String.fromCharCode(...b) === MAGIC;
}

export function parseMoetrace(buffer) {
  if (!hasMoetraceMagic(buffer)) throw new TraceError("not a binary moeviz trace (bad magic)");
  const size = buffer.byteLength;
  if (size < 12) throw new TraceError("truncated .moetrace: the file ends before the header length");
  const hlen = new DataView(buffer).getUint32(8, true);
  if (12 + hlen > size) {
    throw new TraceError(`truncated .moetrace: the header runs past the end of the file (${12 + hlen} bytes needed, ${size} present)`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(buffer, 12, hlen)));
  } catch (e) {
    throw new TraceError(`.moetrace header is not valid JSON: ${e.message}`);
  }
  validateHeader(header);
  const m = header.model, n = header.tokens.length, L = m.moe_layers.length;
  const dataStart = align8(12 + hlen);
  const desc = header.arrays;
  if (desc === null || typeof desc !== "object") throw new TraceError(".moetrace header has no 'arrays' description");
  const routing = {};
  const K = routingK(m, header.settings);
  const expected = { expert_ids: [n, L, K], weights: [n, L, K], probs: [n, L, m.n_expert] };
  for (const name of ["expert_ids", "weights", "probs"]) {
    const spec = desc[name];
    if (spec === undefined) {
      if (name === "probs") continue;
      throw new TraceError(`.moetrace has no ${name} array`);
    }
    routing[name] = readArray(buffer, dataStart, name, spec, expected[name]);
  }
  if (!routing.probs) routing.probs = null;
  const trace = { ...header, routing };
  delete trace.arrays;
  // next-token candidates: [n_tokens][N] arrays, their texts in the header
  if (desc.candidate_ids !== undefined || desc.candidate_probs !== undefined) {
    const spec = desc.candidate_ids || desc.candidate_probs, N = spec && Array.isArray(spec.shape) ? spec.shape[1] : -1;
    for (const name of ["candidate_ids", "candidate_probs"]) {
      if (desc[name] === undefined) throw new TraceError(`.moetrace has no ${name} array`);
    }
    trace.candidates = { N, texts: (header.candidates && header.candidates.texts) || null,
      ids: readArray(buffer, dataStart, "candidate_ids", desc.candidate_ids, [n, N]),
      probs: readArray(buffer, dataStart, "candidate_probs", desc.candidate_probs, [n, N]) };
  } else {
    delete trace.candidates;
  }
  validateRouting(trace);        // expert ids in range, finite weights
  return trace;
}

function readArray(buffer, dataStart, name, spec, shape) {
  const Type = spec && DTYPES[spec.dtype];
  if (!Type) throw new TraceError(`.moetrace array '${name}' has an unknown dtype ${JSON.stringify(spec && spec.dtype)}`);
  const integer = name === "expert_ids" || name === "candidate_ids";
  if (integer !== (Type !== Float32Array)) {
    throw new TraceError(`.moetrace array '${name}' has dtype ${spec.dtype}, expected ${integer ? "int16 or int32" : "float32"}`);
  }
  if (!Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isInteger(d) && d >= 0) ||
      !Number.isInteger(spec.offset) || spec.offset < 0) {
    throw new TraceError(`.moetrace array '${name}' has a bad description`);
  }
  if (spec.shape.join(",") !== shape.join(",")) {
    throw new TraceError(`.moetrace array '${name}' has shape [${spec.shape}], expected [${shape}] [n_tokens][n_moe_layers][k or n_expert]`);
  }
  const count = shape.reduce((a, b) => a * b, 1), start = dataStart + spec.offset;
  const end = start + count * Type.BYTES_PER_ELEMENT;
  if (end > buffer.byteLength) {
    throw new TraceError(`truncated .moetrace: array '${name}' runs past the end of the file (${end} bytes needed, ${buffer.byteLength} present)`);
  }
  if (LITTLE_ENDIAN && start % Type.BYTES_PER_ELEMENT === 0) return new Type(buffer, start, count);
  // a big-endian machine, or an offset the writer would never produce: read value by value
  const view = new DataView(buffer, start, end - start), out = new Type(count);
  const get = { Int16Array: "getInt16", Int32Array: "getInt32", Float32Array: "getFloat32" }[Type.name];
  for (let i = 0; i < count; i++) out[i] = view[get](i * Type.BYTES_PER_ELEMENT, true);
  return out;
}

function align8(n) { return n + ((8 - (n % 8)) % 8); }
