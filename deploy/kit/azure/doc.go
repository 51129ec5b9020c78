// Package azure tests the ARM template in deploy/azure: its structure, the
// parameters and variables it defines and uses, the resource types and API
// versions it deploys, the diagnostic categories it enables (which must be
// the ones normalize turns into events) and the roles it grants.
package azure
