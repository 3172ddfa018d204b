package anomaly

import "testing"

func TestTopFeature(t *testing.T) {
	ok := func(a Anomaly, want string) {
		t.Helper()
		if got := a.TopFeature(); got != want {
			t.Errorf("TopFeature(%+v) = %q; want %q", a.Explanation, got, want)
		}
	}
	ok(Anomaly{}, "")
	ok(Anomaly{Explanation: []Feature{{Name: "calls"}, {Name: "errors_5xx"}}}, "calls")
}
