package gateway

// parseTime reads the event times gateways write and returns Unix ms:
//   - epoch numbers (integer or fractional, as number or string) whose unit
//     is told by magnitude: below 1e11 seconds, below 1e14 milliseconds,
//     below 1e17 microseconds, else nanoseconds;
//   - RFC 3339 / ISO 8601 "2026-02-10T13:55:36.123Z", "…+01:00", "…+0100",
//     also with a space instead of 'T' (Envoy, Istio, nginx $time_iso8601);
//   - common log format "10/Feb/2026:13:55:36 +0000" (nginx $time_local,
//     AWS $context.requestTime).
func parseTime(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 40 {
		return 0, false
	}
	if b[0] >= '0' && b[0] <= '9' && len(b) >= 5 && b[4] == '-' {
		return parseISO(b)
	}
	if len(b) >= 3 && b[2] == '/' {
		return parseCLF(b)
	}
	return parseEpoch(b)
}

func parseEpoch(b []byte) (int64, bool) {
	n, frac, ok := decimal(b)
	if !ok || n >= 1<<62 {
		return 0, false
	}
	switch {
	case n < 1e11:
		return int64(n)*1000 + int64((frac+500)/1000), true
	case n < 1e14:
		return int64(n) + int64((frac+500000)/1e6), true
	case n < 1e17:
		return int64(n / 1000), true
	default:
		return int64(n / 1e6), true
	}
}

func digits(b []byte, n int) (int, bool) {
	if len(b) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseISO reads YYYY-MM-DD[T ]hh:mm:ss[.frac](Z|±hh:mm|±hhmm|±hh).
func parseISO(b []byte) (int64, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != ' ' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	y, ok1 := digits(b[0:], 4)
	mo, ok2 := digits(b[5:], 2)
	d, ok3 := digits(b[8:], 2)
	h, ok4 := digits(b[11:], 2)
	mi, ok5 := digits(b[14:], 2)
	s, ok6 := digits(b[17:], 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, false
	}
	rest := b[19:]
	ms := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		rest = rest[1:]
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			if n < 3 {
				ms = ms*10 + int(rest[n]-'0')
			}
			n++
		}
		if n == 0 {
			return 0, false
		}
		for i := n; i < 3; i++ {
			ms *= 10
		}
		rest = rest[n:]
	}
	off, ok := parseZone(rest)
	if !ok {
		return 0, false
	}
	return civil(y, mo, d, h, mi, s, ms, off)
}

// parseZone reads "", "Z", "±hh", "±hh:mm" or "±hhmm" and returns seconds
// east of UTC. A missing zone means UTC.
func parseZone(b []byte) (int, bool) {
	switch {
	case len(b) == 0:
		return 0, true
	case len(b) == 1 && (b[0] == 'Z' || b[0] == 'z'):
		return 0, true
	case b[0] != '+' && b[0] != '-':
		return 0, false
	}
	sign := 1
	if b[0] == '-' {
		sign = -1
	}
	b = b[1:]
	h, ok := digits(b, 2)
	if !ok {
		return 0, false
	}
	b = b[2:]
	m := 0
	if len(b) > 0 && b[0] == ':' {
		b = b[1:]
	}
	if len(b) > 0 {
		if m, ok = digits(b, 2); !ok || len(b) != 2 {
			return 0, false
		}
	}
	if h > 23 || m > 59 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseCLF reads dd/Mon/yyyy:hh:mm:ss ±hhmm.
func parseCLF(b []byte) (int64, bool) {
	if len(b) < 20 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[14] != ':' || b[17] != ':' {
		return 0, false
	}
	d, ok1 := digits(b, 2)
	y, ok2 := digits(b[7:], 4)
	h, ok3 := digits(b[12:], 2)
	mi, ok4 := digits(b[15:], 2)
	s, ok5 := digits(b[18:], 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, false
	}
	mo := 0
	for i, m := range months {
		if string(b[3:6]) == m {
			mo = i + 1
		}
	}
	rest := b[20:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	off, ok := parseZone(rest)
	if !ok {
		return 0, false
	}
	return civil(y, mo, d, h, mi, s, 0, off)
}

// civil converts a validated civil time to Unix ms (Howard Hinnant's
// days_from_civil), rejecting impossible dates instead of normalising them.
func civil(y, mo, d, h, mi, s, ms, off int) (int64, bool) {
	if y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 60 {
		return 0, false
	}
	if s == 60 { // leap second: the instant is the last millisecond of the minute
		s, ms = 59, 999
	}
	yy := y
	if mo <= 2 {
		yy--
	}
	era := yy / 400
	yoe := yy - era*400
	m := mo + 9
	if mo > 2 {
		m = mo - 3
	}
	doy := (153*m+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := int64(era)*146097 + int64(doe) - 719468
	sec := days*86400 + int64(h*3600+mi*60+s) - int64(off)
	return sec*1000 + int64(ms), true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
