package config

import (
	"fmt"
	"io"
)

// TEMPORARY until the config reference lands (removed at merge).
func WriteEffective(w io.Writer, c Config) error { _, err := fmt.Fprintf(w, "%+v\n", c); return err }

// TEMPORARY until the config reference lands (removed at merge).
func WriteReference(w io.Writer, markdown bool) error {
	for _, k := range Keys() {
		fmt.Fprintln(w, k)
	}
	return nil
}
