// Package e2e holds the end-to-end tests of ipftrace: they create network
// namespaces joined by a veth pair, send real traffic, run the ipftrace
// binary and check the journeys it prints. They need root and Linux; see
// main_test.go for the environment variables.
package e2e

// Test order: TestAutoPing lives in zz_auto_test.go so that it runs last.
// With fentry it leaves ~1600 links to a background detacher, and closing
// them takes minutes in a VM (one RCU-tasks grace period each, serialized
// in the kernel); any fentry attach started meanwhile waits behind it.
