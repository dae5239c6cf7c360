package registry

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HumanDuration formats d the way kubectl's AGE column does: at most two
// units, coarser as the duration grows ("45s", "3m12s", "15m", "5h3m",
// "2d3h", "300d", "3y20d"). A small negative skew (clock drift between
// hosts) counts as "0s"; anything more negative is "<invalid>".
func HumanDuration(d time.Duration) string {
	secs := int64(d / time.Second)
	switch {
	case secs < -1:
		return "<invalid>"
	case secs < 0:
		return "0s"
	case secs < 2*60:
		return fmt.Sprintf("%ds", secs)
	}
	mins := secs / 60
	switch {
	case mins < 10:
		return twoUnits(mins, "m", secs%60, "s")
	case mins < 3*60:
		return fmt.Sprintf("%dm", mins)
	}
	hours := mins / 60
	switch {
	case hours < 8:
		return twoUnits(hours, "h", mins%60, "m")
	case hours < 48:
		return fmt.Sprintf("%dh", hours)
	}
	days := hours / 24
	switch {
	case hours < 8*24:
		return twoUnits(days, "d", hours%24, "h")
	case hours < 2*365*24:
		return fmt.Sprintf("%dd", days)
	case hours < 8*365*24:
		return twoUnits(days/365, "y", days%365, "d")
	}
	return fmt.Sprintf("%dy", days/365)
}

// twoUnits prints "3m12s", or just "3m" when the smaller unit is zero.
func twoUnits(big int64, bigUnit string, small int64, smallUnit string) string {
	if small == 0 {
		return fmt.Sprintf("%d%s", big, bigUnit)
	}
	return fmt.Sprintf("%d%s%d%s", big, bigUnit, small, smallUnit)
}

// age is the AGE cell of an object created at t, "<unknown>" when unset.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t.Time))
}

// microAge is age for the MicroTime fields of events.
func microAge(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t.Time))
}
