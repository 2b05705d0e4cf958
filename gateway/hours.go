package gateway

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// HoursConfig is a queue's opening hours (queues[].hours): a weekly
// schedule in one time zone, minus holidays. A queue without hours is
// always open.
type HoursConfig struct {
	// TimeZone is the IANA name the schedule is written in, such as
	// "Europe/Paris" (default "UTC").
	TimeZone string `yaml:"time_zone"`
	// Weekly maps days to opening ranges: keys are days ("mon") or runs
	// of days ("mon-fri"), values are ranges such as "08:00-12:00". A day
	// may have several ranges; a day no key names is closed.
	Weekly map[string][]string `yaml:"weekly"`
	// Holidays are dates (YYYY-MM-DD, in TimeZone) when the queue stays
	// closed all day.
	Holidays []string `yaml:"holidays"`
}

// ClockConfig is the "clock" section: a fixed time for tests and demos.
type ClockConfig struct {
	// Now, when set (RFC 3339), is the time opening hours are judged by
	// instead of the machine's clock, so that a test or a demo can show
	// a queue closed at any hour. Nothing else reads it.
	Now string `yaml:"now"`
}

// hoursTimeRange is one opening range of a day, in minutes since midnight.
type hoursTimeRange struct{ from, to int }

// schedule is a queue's compiled opening hours.
type schedule struct {
	loc      *time.Location
	days     [7][]hoursTimeRange // by time.Weekday
	holidays map[string]bool     // "2006-01-02"
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// compile checks h and builds its schedule; each error names the key
// below queues[].hours it is about.
func (h *HoursConfig) compile() (*schedule, error) {
	var errs []error
	s := &schedule{holidays: map[string]bool{}}
	tz := h.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || strings.EqualFold(tz, "local") {
		errs = append(errs, fmt.Errorf("time_zone: %q is not an IANA time zone such as Europe/Paris", h.TimeZone))
		loc = time.UTC
	}
	s.loc = loc
	keys := make([]string, 0, len(h.Weekly))
	for k := range h.Weekly {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		days, err := parseDays(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("weekly.%s: %w", k, err))
			continue
		}
		for i, r := range h.Weekly[k] {
			tr, err := parseTimeRange(r)
			if err != nil {
				errs = append(errs, fmt.Errorf("weekly.%s[%d]: %w", k, i, err))
				continue
			}
			for _, d := range days {
				s.days[d] = append(s.days[d], tr)
			}
		}
	}
	for i, d := range h.Holidays {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			errs = append(errs, fmt.Errorf("holidays[%d]: %q is not a date such as 2026-12-25", i, d))
			continue
		}
		s.holidays[d] = true
	}
	for d := range s.days {
		sort.Slice(s.days[d], func(i, j int) bool { return s.days[d][i].from < s.days[d][j].from })
	}
	return s, errors.Join(errs...)
}

// parseDays reads "mon" or a run "mon-fri" (which may wrap: "sat-sun").
func parseDays(k string) ([]time.Weekday, error) {
	a, b, run := strings.Cut(strings.ToLower(strings.TrimSpace(k)), "-")
	from, ok1 := dayNames[a]
	to, ok2 := dayNames[b]
	if !run {
		to, ok2 = from, ok1
	}
	if !ok1 || !ok2 {
		return nil, errors.New("not a day (mon, tue, wed, thu, fri, sat, sun) or a run of days such as mon-fri")
	}
	var out []time.Weekday
	for d := from; ; d = (d + 1) % 7 {
		out = append(out, d)
		if d == to {
			return out, nil
		}
	}
}

// parseTimeRange reads "08:00-18:00"; "24:00" may end a range.
func parseTimeRange(r string) (hoursTimeRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(r), "-")
	bad := fmt.Errorf("%q is not a range such as 08:00-18:00", r)
	if !ok {
		return hoursTimeRange{}, bad
	}
	from, err1 := parseClock(a)
	to, err2 := parseClock(b)
	if err1 != nil || err2 != nil || from >= 24*60 {
		return hoursTimeRange{}, bad
	}
	if to <= from {
		return hoursTimeRange{}, fmt.Errorf("%q ends before it starts (a range may not cross midnight: split it)", r)
	}
	return hoursTimeRange{from, to}, nil
}

func parseClock(s string) (int, error) {
	s = strings.TrimSpace(s)
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, errors.New("bad time")
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, errors.New("bad time")
	}
	return h*60 + m, nil
}

// isOpen reports whether the queue is open at t.
func (s *schedule) isOpen(t time.Time) bool {
	lt := t.In(s.loc)
	if s.holidays[lt.Format(time.DateOnly)] {
		return false
	}
	m := lt.Hour()*60 + lt.Minute()
	for _, r := range s.days[lt.Weekday()] {
		if m >= r.from && m < r.to {
			return true
		}
	}
	return false
}

// nextOpen returns the first moment after t when the queue opens, looking
// up to a year ahead; ok is false when it never opens in that time.
func (s *schedule) nextOpen(t time.Time) (next time.Time, ok bool) {
	lt := t.In(s.loc)
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, s.loc)
	for i := 0; i <= 366; i++ {
		d := day.AddDate(0, 0, i)
		if s.holidays[d.Format(time.DateOnly)] {
			continue
		}
		for _, r := range s.days[d.Weekday()] {
			at := time.Date(d.Year(), d.Month(), d.Day(), r.from/60, r.from%60, 0, 0, s.loc)
			if at.After(t) && !s.isOpen(at.Add(-time.Minute)) {
				return at, true
			}
		}
	}
	return time.Time{}, false
}
