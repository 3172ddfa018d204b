// Package archtest holds the test that keeps the layout honest: which
// group of packages may import which (docs/architecture.md), checked on
// every `make test`.
package archtest
