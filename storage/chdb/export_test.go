package chdb

import (
	"context"

	"github.com/custody-audit/custody/storage/engine"
)

// QueryText runs query with the result in TabSeparated text, the way
// every result travelled before binary results, for tests comparing the
// two.
func QueryText(ctx context.Context, e *Engine, query string, params engine.Params) (engine.Rows, error) {
	return e.query(ctx, opQuery, query, params)
}

// IsBinary reports whether rows arrived in RowBinary.
func IsBinary(rows engine.Rows) bool {
	_, ok := rows.(*binRows)
	return ok
}
