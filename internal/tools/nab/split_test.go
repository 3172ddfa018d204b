package nab

import (
	"slices"
	"strings"
	"testing"
)

// nabFiles are NAB v1.1's 58 labelled files (the keys of
// labels/combined_windows.json), sorted.
var nabFiles = []string{
	"artificialNoAnomaly/art_daily_no_noise.csv",
	"artificialNoAnomaly/art_daily_perfect_square_wave.csv",
	"artificialNoAnomaly/art_daily_small_noise.csv",
	"artificialNoAnomaly/art_flatline.csv",
	"artificialNoAnomaly/art_noisy.csv",
	"artificialWithAnomaly/art_daily_flatmiddle.csv",
	"artificialWithAnomaly/art_daily_jumpsdown.csv",
	"artificialWithAnomaly/art_daily_jumpsup.csv",
	"artificialWithAnomaly/art_daily_nojump.csv",
	"artificialWithAnomaly/art_increase_spike_density.csv",
	"artificialWithAnomaly/art_load_balancer_spikes.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_77c1ca.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_ac20cd.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_fe7f93.csv",
	"realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
	"realAWSCloudwatch/ec2_disk_write_bytes_c0d644.csv",
	"realAWSCloudwatch/ec2_network_in_257a54.csv",
	"realAWSCloudwatch/ec2_network_in_5abac7.csv",
	"realAWSCloudwatch/elb_request_count_8c0756.csv",
	"realAWSCloudwatch/grok_asg_anomaly.csv",
	"realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
	"realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
	"realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
	"realAdExchange/exchange-2_cpc_results.csv",
	"realAdExchange/exchange-2_cpm_results.csv",
	"realAdExchange/exchange-3_cpc_results.csv",
	"realAdExchange/exchange-3_cpm_results.csv",
	"realAdExchange/exchange-4_cpc_results.csv",
	"realAdExchange/exchange-4_cpm_results.csv",
	"realKnownCause/ambient_temperature_system_failure.csv",
	"realKnownCause/cpu_utilization_asg_misconfiguration.csv",
	"realKnownCause/ec2_request_latency_system_failure.csv",
	"realKnownCause/machine_temperature_system_failure.csv",
	"realKnownCause/nyc_taxi.csv",
	"realKnownCause/rogue_agent_key_hold.csv",
	"realKnownCause/rogue_agent_key_updown.csv",
	"realTraffic/TravelTime_387.csv",
	"realTraffic/TravelTime_451.csv",
	"realTraffic/occupancy_6005.csv",
	"realTraffic/occupancy_t4013.csv",
	"realTraffic/speed_6005.csv",
	"realTraffic/speed_7578.csv",
	"realTraffic/speed_t4013.csv",
	"realTweets/Twitter_volume_AAPL.csv",
	"realTweets/Twitter_volume_AMZN.csv",
	"realTweets/Twitter_volume_CRM.csv",
	"realTweets/Twitter_volume_CVS.csv",
	"realTweets/Twitter_volume_FB.csv",
	"realTweets/Twitter_volume_GOOG.csv",
	"realTweets/Twitter_volume_IBM.csv",
	"realTweets/Twitter_volume_KO.csv",
	"realTweets/Twitter_volume_PFE.csv",
	"realTweets/Twitter_volume_UPS.csv",
}

// TestHoldoutFilesFollowTheRule: the held-out list is what the rule gives
// on NAB's files, about a third of each category.
func TestHoldoutFilesFollowTheRule(t *testing.T) {
	if len(nabFiles) != 58 {
		t.Fatalf("%d NAB files, want 58", len(nabFiles))
	}
	got := HeldOut(nabFiles)
	if !slices.Equal(got, HoldoutFiles) {
		t.Fatalf("the rule gives\n%q\nHoldoutFiles is\n%q", got, HoldoutFiles)
	}
	// Per category: held out / all.
	want := map[string][2]int{
		"artificialNoAnomaly": {2, 5}, "artificialWithAnomaly": {2, 6}, "realAWSCloudwatch": {6, 17},
		"realAdExchange": {2, 6}, "realKnownCause": {2, 7}, "realTraffic": {2, 7}, "realTweets": {3, 10},
	}
	count := map[string][2]int{}
	for _, n := range nabFiles {
		cat, _, _ := strings.Cut(n, "/")
		c := count[cat]
		c[1]++
		if SplitHoldout.Contains(n) {
			c[0]++
		}
		if SplitHoldout.Contains(n) == SplitTune.Contains(n) || !SplitAll.Contains(n) {
			t.Errorf("%s: in holdout %v, in tune %v, in all %v", n, SplitHoldout.Contains(n), SplitTune.Contains(n), SplitAll.Contains(n))
		}
		count[cat] = c
	}
	for cat, w := range want {
		if count[cat] != w {
			t.Errorf("%s: %d of %d held out, want %d of %d", cat, count[cat][0], count[cat][1], w[0], w[1])
		}
	}
	// The rule depends on nothing but the names: input order and
	// duplicates do not change it.
	shuffled := append(slices.Clone(nabFiles), nabFiles[3], nabFiles[40])
	slices.Reverse(shuffled)
	if !slices.Equal(HeldOut(shuffled), HoldoutFiles) {
		t.Error("HeldOut depends on the order of its input")
	}
}

func TestParseSplit(t *testing.T) {
	for _, s := range []string{"all", "tune", "holdout"} {
		if sp, err := ParseSplit(s); err != nil || string(sp) != s {
			t.Errorf("ParseSplit(%q) = %q, %v", s, sp, err)
		}
	}
	if _, err := ParseSplit("test"); err == nil || !strings.Contains(err.Error(), "all, tune, holdout") {
		t.Errorf("ParseSplit(test): %v", err)
	}
}

// TestSubsetAndScoreAt: a part keeps only its series; scoring it at the
// thresholds its own sweep picks is ScoreCorpus, and at another threshold
// it is the score of those detections.
func TestSubsetAndScoreAt(t *testing.T) {
	c, err := Load("testdata/nab")
	if err != nil {
		t.Fatal(err)
	}
	// Hold one of the three out by giving it a held-out name.
	c.Series[0].Name = HoldoutFiles[0]
	if sub := c.Subset(SplitHoldout); len(sub.Series) != 1 || sub.Series[0].Name != HoldoutFiles[0] {
		t.Fatalf("holdout part: %d series", len(sub.Series))
	}
	tune := c.Subset(SplitTune)
	if len(tune.Series) != 2 || len(c.Subset(SplitAll).Series) != 3 {
		t.Fatalf("tune part: %d series, all: %d", len(tune.Series), len(c.Subset(SplitAll).Series))
	}
	scores := map[string][]float64{}
	for _, s := range tune.Series {
		sc := make([]float64, len(s.Values))
		for i := range sc {
			sc[i] = float64(i%97) / 100 // detections everywhere, some in windows
		}
		scores[s.Name] = sc
	}
	rep, err := ScoreCorpus(tune, scores)
	if err != nil {
		t.Fatal(err)
	}
	thr := map[string]float64{}
	for _, p := range rep.Profiles {
		thr[p.Name] = p.Threshold
	}
	at, err := ScoreCorpusAt(tune, scores, thr)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range at.Profiles {
		if q := rep.Profiles[i]; p.Threshold != q.Threshold || p.Raw != q.Raw || p.TP != q.TP || p.FP != q.FP {
			t.Errorf("%s at the swept threshold: %+v, ScoreCorpus %+v", p.Name, p, q)
		}
	}
	// Above every score nothing is detected: the null detector's score.
	none, err := ScoreCorpusAt(tune, scores, map[string]float64{"standard": 2})
	if err != nil {
		t.Fatal(err)
	}
	if p := none.Profiles[0]; p.Raw != p.Null || p.Normalized != 0 || p.TP != 0 || p.FP != 0 {
		t.Errorf("standard above every score: %+v, want the null score", p)
	}
	if none.Profiles[1].Threshold != rep.Profiles[1].Threshold {
		t.Errorf("a profile without a threshold is not swept: %g, want %g", none.Profiles[1].Threshold, rep.Profiles[1].Threshold)
	}
}
