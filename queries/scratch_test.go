package queries

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

func BenchmarkScratch(b *testing.B) {
	eng, _ := benchStore(b)
	ctx := context.Background()
	for _, sql := range strings.Split(os.Getenv("SQL"), ";;") {
		for i := 0; i < 3; i++ {
			start := time.Now()
			rows, err := eng.Query(ctx, sql, engine.Params{})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			var last []string
			for rows.Next() {
				n++
				vals := make([]string, len(rows.Columns()))
				ptrs := make([]any, len(vals))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				rows.Scan(ptrs...)
				last = vals
			}
			rows.Close()
			b.Logf("%v rows=%d last=%v :: %.90s", time.Since(start).Round(time.Millisecond), n, last, sql)
		}
	}
}
