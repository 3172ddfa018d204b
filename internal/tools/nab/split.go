package nab

import (
	"fmt"
	"slices"
	"strings"
)

// NAB has no held-out part: every published score is on the whole corpus,
// usually with parameters chosen on it. Split makes one, so a detector's
// parameters can be chosen on one part and its score reported on another.
//
// The rule is fixed and needs no randomness: within each of NAB's seven
// categories (the directory under data/), the files sorted by name, every
// third file starting with the second (0-based index 1, 4, 7, ...) is held
// out. That is 19 of the 58 files, spread over every category in proportion
// (2 of artificialNoAnomaly's 5, 6 of realAWSCloudwatch's 17, 3 of
// realTweets' 10, and so on).
// HoldoutFiles lists them, so the rule can be checked by reading.

// Split names a part of the corpus.
type Split string

// The parts: the tuning part parameters are chosen on, the held-out part
// they are judged on, and the whole corpus NAB's scoreboard uses.
const (
	SplitAll     Split = "all"
	SplitTune    Split = "tune"
	SplitHoldout Split = "holdout"
)

// Splits lists the parts in the order reports print them.
var Splits = []Split{SplitAll, SplitTune, SplitHoldout}

// HoldoutFiles is the held-out part of NAB v1.1's 58 labelled files, by the
// rule above. TestHoldoutFilesFollowTheRule checks it against the rule on
// the full file list.
var HoldoutFiles = []string{
	"artificialNoAnomaly/art_daily_perfect_square_wave.csv",
	"artificialNoAnomaly/art_noisy.csv",
	"artificialWithAnomaly/art_daily_jumpsdown.csv",
	"artificialWithAnomaly/art_increase_spike_density.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_fe7f93.csv",
	"realAWSCloudwatch/ec2_network_in_257a54.csv",
	"realAWSCloudwatch/grok_asg_anomaly.csv",
	"realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
	"realAdExchange/exchange-2_cpm_results.csv",
	"realAdExchange/exchange-4_cpc_results.csv",
	"realKnownCause/cpu_utilization_asg_misconfiguration.csv",
	"realKnownCause/nyc_taxi.csv",
	"realTraffic/TravelTime_451.csv",
	"realTraffic/speed_6005.csv",
	"realTweets/Twitter_volume_AMZN.csv",
	"realTweets/Twitter_volume_FB.csv",
	"realTweets/Twitter_volume_KO.csv",
}

// HeldOut applies the rule to names (files as "category/file.csv") and
// returns the held-out ones, sorted.
func HeldOut(names []string) []string {
	byCat := map[string][]string{}
	for _, n := range names {
		cat, _, _ := strings.Cut(n, "/")
		byCat[cat] = append(byCat[cat], n)
	}
	var out []string
	for _, files := range byCat {
		slices.Sort(files)
		files = slices.Compact(files)
		for i := 1; i < len(files); i += 3 {
			out = append(out, files[i])
		}
	}
	slices.Sort(out)
	return out
}

// ParseSplit reads a part's name.
func ParseSplit(s string) (Split, error) {
	if sp := Split(s); slices.Contains(Splits, sp) {
		return sp, nil
	}
	return "", fmt.Errorf("split %q: want one of all, tune, holdout", s)
}

// Contains says whether the file name ("category/file.csv") is in part sp
// of the corpus, by HoldoutFiles.
func (sp Split) Contains(name string) bool {
	switch sp {
	case SplitTune:
		return !slices.Contains(HoldoutFiles, name)
	case SplitHoldout:
		return slices.Contains(HoldoutFiles, name)
	default:
		return true
	}
}

// Subset returns the part of c named sp: the same profiles, only the
// series in that part. The series are shared with c, not copied.
func (c *Corpus) Subset(sp Split) *Corpus {
	out := &Corpus{Profiles: c.Profiles}
	for _, s := range c.Series {
		if sp.Contains(s.Name) {
			out.Series = append(out.Series, s)
		}
	}
	return out
}
