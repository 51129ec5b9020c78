package bundle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// One event can be stored several times: once per path that delivered it
// (Event Hubs, Log Analytics, an archive), each copy a row of its own
// chain. A bundle keeps every row, since each is evidence of what its path
// carried, and marks the repeats so that an auditor counts events as the
// queries do: duplicates.jsonl lists every row whose event id an earlier
// row of the data file holds, and the manifest states the number of
// distinct events. Verify recomputes both from the data. See
// export-v1.md, "Version 2: duplicate deliveries".

// DuplicatesFile lists a bundle's repeated rows (version 2 bundles).
const DuplicatesFile = "duplicates.jsonl"

// Duplicate is a row whose event id an earlier row of the bundle holds.
// Rows are in data file order (chain, then sequence number), so the first
// copy is the one in the lexically first chain, at the lowest sequence
// number: the copy the canned queries show.
type Duplicate struct {
	EventID    string `json:"event_id"`
	Chain      string `json:"chain"`
	Seq        uint64 `json:"seq"`
	FirstChain string `json:"first_chain"`
	FirstSeq   uint64 `json:"first_seq"`
}

// copyAt is where a bundle first holds an event.
type copyAt struct {
	chain string
	seq   uint64
}

// duplicateTracker finds the repeated event ids of rows given in data file
// order.
type duplicateTracker struct {
	first map[string]copyAt
	dups  []Duplicate
}

func newDuplicateTracker() *duplicateTracker {
	return &duplicateTracker{first: map[string]copyAt{}}
}

// add records the next row. id must not be a view of a reused buffer.
func (d *duplicateTracker) add(chain string, seq uint64, id string) {
	if f, ok := d.first[id]; ok {
		d.dups = append(d.dups, Duplicate{EventID: id, Chain: chain, Seq: seq, FirstChain: f.chain, FirstSeq: f.seq})
		return
	}
	d.first[id] = copyAt{chain: chain, seq: seq}
}

// events is the number of distinct event ids seen.
func (d *duplicateTracker) events() uint64 { return uint64(len(d.first)) }

// encodeDuplicates renders dups as duplicates.jsonl: one JSON object per
// line, keys in the order of Duplicate's fields, "\n" line ends.
func encodeDuplicates(dups []Duplicate) []byte {
	var b bytes.Buffer
	for _, d := range dups {
		b.WriteString(`{"event_id":`)
		b.Write(jsonString(d.EventID))
		b.WriteString(`,"chain":`)
		b.Write(jsonString(d.Chain))
		b.WriteString(`,"seq":`)
		b.WriteString(strconv.FormatUint(d.Seq, 10))
		b.WriteString(`,"first_chain":`)
		b.Write(jsonString(d.FirstChain))
		b.WriteString(`,"first_seq":`)
		b.WriteString(strconv.FormatUint(d.FirstSeq, 10))
		b.WriteString("}\n")
	}
	return b.Bytes()
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// decodeDuplicates parses duplicates.jsonl strictly: every line one
// object with exactly Duplicate's keys.
func decodeDuplicates(b []byte) ([]Duplicate, error) {
	var out []Duplicate
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var d Duplicate
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("line %d: more than one object", n)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
