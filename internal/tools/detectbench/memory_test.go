package detectbench

import "testing"

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		rss, hwm uint64
		ok       bool
	}{
		{"both", "Name:\tdetector\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n", 1 << 20, 2 << 20, true},
		{"no hwm", "VmRSS:\t1024 kB\n", 0, 0, false},
		{"bad unit", "VmRSS:\t1024 MB\nVmHWM:\t1 kB\n", 0, 0, false},
		{"not a number", "VmRSS:\tx kB\nVmHWM:\t1 kB\n", 0, 0, false},
		{"too big for bytes", "VmRSS:\t18014398509481984 kB\nVmHWM:\t1 kB\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	} {
		rss, hwm, err := parseStatus([]byte(tc.in))
		if (err == nil) != tc.ok || rss != tc.rss || hwm != tc.hwm {
			t.Errorf("%s: parseStatus = %d, %d, %v; want %d, %d, ok %v", tc.name, rss, hwm, err, tc.rss, tc.hwm, tc.ok)
		}
	}
}

func TestSteady(t *testing.T) {
	for _, tc := range []struct {
		xs   []uint64
		want bool
	}{
		{[]uint64{100, 100, 100}, true},
		{[]uint64{500, 100, 100, 100}, true},
		{[]uint64{100, 100}, false},
		{[]uint64{100, 100, 90}, false},
		{[]uint64{1000, 1005, 1009}, true},
	} {
		if got := steady(tc.xs, 3); got != tc.want {
			t.Errorf("steady(%v, 3) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}

// FuzzParseStatus: any input is refused or gives both figures, in bytes.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	f.Add([]byte("VmRSS: 1 kB\nVmHWM: 18446744073709551615 kB\n"))
	f.Add([]byte("VmRSS:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rss, hwm, err := parseStatus(b)
		if err == nil && (rss == 0 || hwm == 0 || rss%1024 != 0 || hwm%1024 != 0) {
			t.Fatalf("parseStatus(%q) = %d, %d without error", b, rss, hwm)
		}
	})
}
