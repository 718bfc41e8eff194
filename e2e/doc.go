// Package e2e holds the end-to-end tests of ipftrace: they create network
// namespaces joined by a veth pair, send real traffic, run the ipftrace
// binary and check the journeys it prints. They need root and Linux; see
// main_test.go for the environment variables.
package e2e
