package storage

// ExecMigrationStatement exposes execMigrationStatement to the external
// tests.
var ExecMigrationStatement = execMigrationStatement
