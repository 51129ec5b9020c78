// Command clickhouse-roles writes deploy/clickhouse/users.d/custody-roles.xml
// from the store's role definitions. Run it from deploy/kit after changing
// migration 0004_roles.sql:
//
//	$ go run ./cmd/clickhouse-roles
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/custody-audit/custody/deploy/kit/clickhouse"
)

func main() {
	b, err := clickhouse.RolesXML()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clickhouse-roles:", err)
		os.Exit(1)
	}
	path := filepath.Join("..", "clickhouse", filepath.FromSlash(clickhouse.RolesFile))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "clickhouse-roles:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", path)
}
