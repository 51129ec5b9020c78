package normalize

import (
	"flag"
	"os"
	"testing"
)

// fuzzMinimizeTime is how long the fuzzer may spend shrinking one input
// when -fuzzminimizetime is not given (Go's default is a minute).
//
// The fuzzer shrinks every input that reached new coverage before adding
// it to the corpus, one byte range at a time: on the order of n² runs of
// the target for an n-byte input, most of them failing for inputs that
// are JSON. This package's targets take audit events and bodies of
// hundreds or thousands of bytes, and what they cover varies a little from
// run to run on the same input (map order into slices.Sort, reused
// scratch), so such inputs come up every few seconds. With a minute each,
// both workers spent whole -fuzztime runs shrinking (the stats line at
// "0 execs/s"): FuzzEscapedReaderProcess, FuzzStream and
// FuzzAppendJSONString explored nothing after their first seconds. A
// failing input is still reported and written to testdata/fuzz after a
// second of shrinking; pass -fuzzminimizetime to shrink longer.
const fuzzMinimizeTime = "1s"

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", fuzzMinimizeTime); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
