// Checks, in the browser, what the server claims about an event: the
// RFC 6962 inclusion proof of its row in the Merkle tree of the signed
// checkpoint (RFC 9162 section 2.1.3.2), with WebCrypto's SHA-256, and the
// checkpoint's Ed25519 signature (Go signed-note format) where the browser
// has Ed25519.

export function hexToBytes(h) {
  if (h.length % 2) throw new Error('odd hex');
  const b = new Uint8Array(h.length / 2);
  for (let i = 0; i < b.length; i++) {
    const v = parseInt(h.substr(i * 2, 2), 16);
    if (Number.isNaN(v)) throw new Error('bad hex');
    b[i] = v;
  }
  return b;
}

export function bytesToHex(b) {
  return Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
}

export function b64ToBytes(s) {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

async function sha256(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const buf = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

const leafPrefix = new Uint8Array([0]);
const nodePrefix = new Uint8Array([1]);

// leafHash is the Merkle leaf of a row: SHA-256(0x00 || row hash).
export function leafHash(rowHash) { return sha256(leafPrefix, rowHash); }

// rootFromProof recomputes the tree root from a leaf hash, its index, the
// tree size and the proof (RFC 9162 2.1.3.2). It throws when the proof
// has the wrong length for the index and size.
export async function rootFromProof(leaf, index, size, proof) {
  let fn = BigInt(index), sn = BigInt(size) - 1n;
  if (fn > sn) throw new Error('leaf index beyond the tree');
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error('proof too long');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(nodePrefix, p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await sha256(nodePrefix, r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error('proof too short');
  return r;
}

// parseCheckpoint reads a signed note: its text (origin, size, base64
// root, extension lines) and its signature lines.
export function parseCheckpoint(note) {
  const cut = note.lastIndexOf('\n\n');
  if (cut < 0) throw new Error('not a signed note');
  const text = note.slice(0, cut + 1);
  const lines = text.split('\n');
  const sigs = note.slice(cut + 2).split('\n').filter(l => l.startsWith('\u2014 ')).map(l => {
    const [name, sig] = l.slice(2).split(' ');
    return { name, sig: b64ToBytes(sig) };
  });
  return { text, origin: lines[0], size: BigInt(lines[1]), root: b64ToBytes(lines[2]), sigs };
}

// checkSignature verifies the note's Ed25519 signature by the key
// (name+hash+base64(0x01 || public key)). It returns true or false, or
// null when the browser has no Ed25519.
export async function checkSignature(cp, vkey) {
  // name+hash+key: the base64 key may itself contain '+'.
  const i = vkey.indexOf('+'), j = vkey.indexOf('+', i + 1);
  if (i < 0 || j < 0) throw new Error('not a verifier key');
  const name = vkey.slice(0, i), hash = vkey.slice(i + 1, j), key = vkey.slice(j + 1);
  const kb = b64ToBytes(key);
  if (kb[0] !== 1) throw new Error('not an Ed25519 key');
  const want = hexToBytes(hash.padStart(8, '0'));
  const sig = cp.sigs.find(s => s.name === name && s.sig.length === 68 && s.sig.slice(0, 4).every((x, i) => x === want[i]));
  if (!sig) return false;
  let k;
  try {
    k = await crypto.subtle.importKey('raw', kb.slice(1), { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    console.warn('no Ed25519 in WebCrypto:', err);
    return null;
  }
  return crypto.subtle.verify({ name: 'Ed25519' }, k, sig.sig.slice(4), new TextEncoder().encode(cp.text));
}

// checkEvent checks an event's proof against its checkpoint. The root is
// taken from the signed note itself, not from the server's other fields.
export async function checkEvent(ev) {
  const cp = parseCheckpoint(ev.checkpoint.note);
  if (cp.size !== BigInt(ev.proof.tree_size)) return { ok: false, why: 'the proof is for another tree size than the checkpoint' };
  const leaf = await leafHash(hexToBytes(ev.hash));
  const root = await rootFromProof(leaf, ev.proof.leaf_index, ev.proof.tree_size, ev.proof.hashes.map(hexToBytes));
  const ok = bytesToHex(root) === bytesToHex(cp.root);
  let sig = null;
  if (ev.verify_key) {
    try { sig = await checkSignature(cp, ev.verify_key); } catch (err) { console.warn('signature check:', err); sig = false; }
  }
  return { ok, root: bytesToHex(root), checkpointRoot: bytesToHex(cp.root), signature: sig, origin: cp.origin };
}
