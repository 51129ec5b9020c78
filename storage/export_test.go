package storage

// ExecMigrationStatement exposes execMigrationStatement to the external
// tests.
var ExecMigrationStatement = execMigrationStatement

// WithBeforeWalk sets a function Verify runs after reading the purge
// records and before reading the chains.
func WithBeforeWalk(o VerifyOptions, f func()) VerifyOptions {
	o.beforeWalk = f
	return o
}
