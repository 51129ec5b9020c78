package chdb

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// nativeDoc is a Native block written by hand the way ClickHouse writes
// it: a String, a LowCardinality(String), an Array(LowCardinality(String))
// and a Map(String, String) column of two rows.
func nativeDoc() []byte {
	u64 := func(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := []byte{4, 2}
	b = str(str(b, "s"), "String")
	b = str(str(b, "x"), "bb")
	b = str(str(b, "l"), "LowCardinality(String)")
	b = u64(b, 1)              // version
	b = u64(b, 0x600)          // additional keys, UInt8 indexes
	b = u64(b, 2)              // keys
	b = str(str(b, ""), "one") // the keys
	b = u64(b, 2)              // rows
	b = append(b, 1, 0)        // indexes
	b = str(str(b, "t"), "Array(LowCardinality(String))")
	b = u64(b, 1)         // version of the elements
	b = u64(u64(b, 2), 2) // ends: row 0 two, row 1 none
	b = u64(b, 0x600)
	b = u64(b, 2)
	b = str(str(b, "p"), "q")
	b = u64(b, 2)
	b = append(b, 1, 0)
	b = str(str(b, "m"), "Map(String, String)")
	b = u64(u64(b, 0), 1) // ends: row 0 empty, row 1 one pair
	b = str(b, "k")
	b = str(b, "v")
	return b
}

func TestNativeBlockValues(t *testing.T) {
	doc := nativeDoc()
	header, ok, err := NativeHeader(doc)
	if err != nil || !ok {
		t.Fatalf("NativeHeader: %v %v", ok, err)
	}
	names, types, _, err := readHeader(header)
	if err != nil || !reflect.DeepEqual(names, []string{"s", "l", "t", "m"}) || types[2] != "Array(LowCardinality(String))" {
		t.Fatalf("header %q %q %v", names, types, err)
	}
	var want []*binType
	for _, s := range types {
		bt, _ := parseBinType(s)
		want = append(want, bt)
	}
	r := &nativeReader{b: doc}
	blk, _, err := r.readBlock(want)
	if err != nil || r.p != len(doc) || blk.rows != 2 {
		t.Fatalf("readBlock: %v, read %d of %d", err, r.p, len(doc))
	}
	got := [][]string{}
	for row := 0; row < 2; row++ {
		var vals []string
		for _, c := range blk.cols {
			vals = append(vals, string(c.value(nil, row)))
		}
		got = append(got, vals)
	}
	wantVals := [][]string{
		{"\x01x", "\x03one", "\x02\x01q\x01p", "\x00"},
		{"\x02bb", "\x00", "\x00", "\x01\x01k\x01v"},
	}
	if !reflect.DeepEqual(got, wantVals) {
		t.Errorf("values %q, want %q", got, wantVals)
	}
}

// TestNativeCorruptBlocks cuts and alters the block at every byte: each
// read ends in an error or in values, never in a panic.
func TestNativeCorruptBlocks(t *testing.T) {
	doc := nativeDoc()
	header, _, _ := NativeHeader(doc)
	_, types, _, _ := readHeader(header)
	var want []*binType
	for _, s := range types {
		bt, _ := parseBinType(s)
		want = append(want, bt)
	}
	try := func(b []byte) {
		_, _, _ = NativeHeader(b)
		r := &nativeReader{b: b}
		blk, ok, err := r.readBlock(want)
		if err != nil || !ok {
			return
		}
		for row := 0; row < blk.rows; row++ {
			for _, c := range blk.cols {
				c.value(nil, row)
			}
		}
	}
	for i := range doc {
		try(doc[:i])
		for _, v := range []byte{0, 1, 0x7f, 0x80, 0xff} {
			b := append([]byte(nil), doc...)
			b[i] = v
			try(b)
		}
	}
}
