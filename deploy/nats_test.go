package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/natsconn"
)

var update = flag.Bool("update", false, "rewrite the generated files: deploy/nats/cli from the resources `reconciler run` creates (the NACK files are written by hand), and the PrometheusRule from the rule file")

// definitionReplicas is the replica count of every definition: they are
// for a clustered NATS of three servers, like the Deployment's
// RECONCILER_STREAM_REPLICAS. The test creates them with one replica on its
// single server.
const definitionReplicas = 3

const (
	cliStreams   = "nats/cli/streams"   // <stream>.json: StreamConfig, for `nats stream add --config`
	cliConsumers = "nats/cli/consumers" // <stream>/<durable>.json: ConsumerConfig, for `nats consumer add <stream> --config`
	nackDir      = "nats/nack"          // NACK resources (jetstream.nats.io/v1beta2) and their kustomization.yaml
)

// natsResources are streams (KV buckets included, as KV_<bucket>) by name
// and durable consumers by "<stream>/<durable>".
type natsResources struct {
	streams   map[string]jetstream.StreamConfig
	consumers map[string]jetstream.ConsumerConfig
}

// TestNATSDefinitionsMatchRun compares the NATS definitions in deploy/nats
// with what `reconciler run` creates on an empty server: the CLI JSON files
// and the NACK resources, each applied to an empty server of its own, must
// produce exactly the streams, buckets and durable consumers of `run`, with
// the same configuration. A resource that `run` creates without a
// definition fails the test; adding its files is all it takes.
func TestNATSDefinitionsMatchRun(t *testing.T) {
	_, base := emulator(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	srv, js := startNATS(t)
	r := runReconciler(t, base, srv.ClientURL())
	r.stop(t)
	want := readResources(ctx, t, js)
	if len(want.streams) == 0 {
		t.Fatal("reconciler run created no stream")
	}
	withLimits(t, want)
	if *update {
		writeCLIDefinitions(t, want)
	}

	_, jsCLI := startNATS(t)
	applyCLIDefinitions(ctx, t, jsCLI)
	_, jsNACK := startNATS(t)
	applyNACKDefinitions(ctx, t, jsNACK)

	for _, src := range []struct {
		name string
		js   jetstream.JetStream
	}{{"deploy/" + cliStreams + " and " + cliConsumers, jsCLI}, {"deploy/" + nackDir, jsNACK}} {
		got := readResources(ctx, t, src.js)
		compareKeys(t, src.name, "stream or bucket", want.streams, got.streams)
		compareKeys(t, src.name, "durable consumer", want.consumers, got.consumers)
		for name, w := range want.streams {
			if g, ok := got.streams[name]; ok {
				if diff := cmp.Diff(w, g); diff != "" {
					t.Errorf("%s: stream %s differs from what run creates (-run +definition):\n%s", src.name, name, diff)
				}
			}
		}
		for name, w := range want.consumers {
			if g, ok := got.consumers[name]; ok {
				if diff := cmp.Diff(w, g); diff != "" {
					t.Errorf("%s: consumer %s differs from what run creates (-run +definition):\n%s", src.name, name, diff)
				}
			}
		}
	}
	t.Logf("run creates %d streams and buckets and %d durable consumers: %v %v", len(want.streams), len(want.consumers),
		slices.Sorted(maps.Keys(want.streams)), slices.Sorted(maps.Keys(want.consumers)))
}

// withLimits gives every stream and bucket that `run` creates without a
// max_bytes the size of internal/natsconn/limits.go, as the definitions
// have it: the setup code of `run` is to set the same sizes, after which
// this changes nothing. Every stream must have a size there.
func withLimits(t *testing.T, res natsResources) {
	t.Helper()
	for name, cfg := range res.streams {
		size, ok := natsconn.StreamMaxBytes(name)
		if !ok {
			t.Errorf("stream %s has no size in internal/natsconn/limits.go", name)
			continue
		}
		if cfg.MaxBytes > 0 && cfg.MaxBytes != size {
			t.Errorf("run creates stream %s with max_bytes %d, internal/natsconn/limits.go says %d", name, cfg.MaxBytes, size)
		}
		cfg.MaxBytes = size
		res.streams[name] = cfg
	}
}

// compareKeys reports resources that run creates and the definitions lack,
// and the reverse.
func compareKeys[V any](t *testing.T, src, what string, want, got map[string]V) {
	t.Helper()
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: no definition of the %s %s that `reconciler run` creates (`go test ./deploy -run NATSDefinitions -args -update` writes the CLI files; write the NACK file by hand)", src, what, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: defines the %s %s, which `reconciler run` does not create", src, what, name)
		}
	}
}

// startNATS starts an empty embedded JetStream server and connects to it.
func startNATS(t *testing.T) (*natsembed.Server, jetstream.JetStream) {
	t.Helper()
	return testutil.JetStream(t)
}

// readResources reads every stream and durable consumer of a server, with
// the metadata the server adds (_nats.*) removed.
func readResources(ctx context.Context, t *testing.T, js jetstream.JetStream) natsResources {
	t.Helper()
	res := natsResources{streams: map[string]jetstream.StreamConfig{}, consumers: map[string]jetstream.ConsumerConfig{}}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		cfg := si.Config
		cfg.Metadata = userMetadata(cfg.Metadata)
		res.streams[cfg.Name] = cfg
		s, err := js.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.Config.Durable == "" {
				continue // ordered consumers of KV watchers and the like
			}
			cc := ci.Config
			cc.Metadata = userMetadata(cc.Metadata)
			res.consumers[cfg.Name+"/"+cc.Durable] = cc
		}
		if err := consumers.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

// userMetadata drops the metadata keys the server sets itself.
func userMetadata(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// decodeStrict decodes JSON and rejects unknown fields (a misspelt field
// would otherwise be ignored by the server and the CLI alike).
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// applyCLIDefinitions creates what the CLI files define, as
// `nats stream add --config` and `nats consumer add --config` would.
func applyCLIDefinitions(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(cliStreams, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no stream definitions in %s", cliStreams)
	}
	for _, f := range files {
		var cfg jetstream.StreamConfig
		readCLIFile(t, f, &cfg)
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); cfg.Name != want {
			t.Errorf("%s defines stream %q; name the file after the stream (%s.json)", f, cfg.Name, cfg.Name)
		}
		if cfg.Replicas != definitionReplicas {
			t.Errorf("%s: num_replicas %d, want %d like every definition", f, cfg.Replicas, definitionReplicas)
		}
		cfg.Replicas = 1
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Errorf("%s: the server refuses it: %v", f, err)
		}
	}
	files, _ = filepath.Glob(filepath.Join(cliConsumers, "*", "*.json"))
	for _, f := range files {
		var cfg jetstream.ConsumerConfig
		readCLIFile(t, f, &cfg)
		stream := filepath.Base(filepath.Dir(f))
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); cfg.Durable != want {
			t.Errorf("%s defines durable %q; name the file after the durable (%s.json)", f, cfg.Durable, cfg.Durable)
		}
		if cfg.Replicas != definitionReplicas {
			t.Errorf("%s: num_replicas %d, want %d like every definition", f, cfg.Replicas, definitionReplicas)
		}
		cfg.Replicas = 1
		if _, err := js.CreateConsumer(ctx, stream, cfg); err != nil {
			t.Errorf("%s: the server refuses it on stream %s: %v", f, stream, err)
		}
	}
}

func readCLIFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// writeCLIDefinitions writes the CLI files of every resource in res (-update).
func writeCLIDefinitions(t *testing.T, res natsResources) {
	t.Helper()
	write := func(path string, v any) {
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // subjects keep their ">" readable
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(buf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	for name, cfg := range res.streams {
		cfg.Replicas = definitionReplicas
		write(filepath.Join(cliStreams, name+".json"), cfg)
	}
	for key, cfg := range res.consumers {
		cfg.Replicas = definitionReplicas
		write(filepath.Join(cliConsumers, key+".json"), cfg)
	}
}

// nackObject is a NACK resource (jetstream.nats.io/v1beta2).
type nackObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

// nackConnection are the NACK fields that say how to reach NATS and guard
// the resource; they do not change the resource itself.
type nackConnection struct {
	PreventDelete bool     `json:"preventDelete,omitempty"`
	PreventUpdate bool     `json:"preventUpdate,omitempty"`
	Account       string   `json:"account,omitempty"`
	Servers       []string `json:"servers,omitempty"`
}

// The NACK spec fields the definitions use, spelt as NACK's v1beta2 types.
type nackStream struct {
	Name            string   `json:"name"`
	Description     string   `json:"description,omitempty"`
	Subjects        []string `json:"subjects,omitempty"`
	Retention       string   `json:"retention,omitempty"`
	MaxAge          string   `json:"maxAge,omitempty"`
	DuplicateWindow string   `json:"duplicateWindow,omitempty"`
	Storage         string   `json:"storage,omitempty"`
	Discard         string   `json:"discard,omitempty"`
	// NACK's per-subject limits: at most maxMsgsPerSubject messages per
	// subject, and with discardPerSubject a new one is refused.
	MaxMsgsPerSubject int   `json:"maxMsgsPerSubject,omitempty"`
	DiscardPerSubject bool  `json:"discardPerSubject,omitempty"`
	MaxBytes          int64 `json:"maxBytes,omitempty"`
	Replicas          int   `json:"replicas,omitempty"`
	nackConnection
}

type nackConsumer struct {
	StreamName    string `json:"streamName"`
	DurableName   string `json:"durableName"`
	Description   string `json:"description,omitempty"`
	AckPolicy     string `json:"ackPolicy,omitempty"`
	AckWait       string `json:"ackWait,omitempty"`
	DeliverPolicy string `json:"deliverPolicy,omitempty"`
	FilterSubject string `json:"filterSubject,omitempty"`
	MaxDeliver    int    `json:"maxDeliver,omitempty"`
	MaxAckPending int    `json:"maxAckPending,omitempty"`
	Replicas      int    `json:"replicas,omitempty"`
	nackConnection
}

type nackKeyValue struct {
	Bucket      string `json:"bucket"`
	Description string `json:"description,omitempty"`
	History     int    `json:"history,omitempty"`
	TTL         string `json:"ttl,omitempty"`
	MaxBytes    int64  `json:"maxBytes,omitempty"`
	Storage     string `json:"storage,omitempty"`
	Replicas    int    `json:"replicas,omitempty"`
	nackConnection
}

// applyNACKDefinitions creates what the NACK resources define, mapping
// their fields as the NACK controller does.
func applyNACKDefinitions(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(nackDir, "*.yaml"))
	var objects []string
	var consumers []func()
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		objects = append(objects, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var obj nackObject
		if err := decodeStrict(j, &obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if obj.APIVersion != "jetstream.nats.io/v1beta2" || obj.Metadata.Name == "" {
			t.Errorf("%s: apiVersion %q, name %q; want jetstream.nats.io/v1beta2 and a name", f, obj.APIVersion, obj.Metadata.Name)
		}
		fail := func(err error) {
			if err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		switch obj.Kind {
		case "Stream":
			var s nackStream
			if err := decodeStrict(obj.Spec, &s); err != nil {
				t.Fatalf("%s: spec: %v", f, err)
			}
			checkReplicas(t, f, s.Replicas)
			cfg := jetstream.StreamConfig{Name: s.Name, Description: s.Description, Subjects: s.Subjects, Replicas: 1,
				MaxMsgsPerSubject: int64(s.MaxMsgsPerSubject), DiscardNewPerSubject: s.DiscardPerSubject, MaxBytes: s.MaxBytes}
			if s.MaxBytes == 0 {
				cfg.MaxBytes = -1
			}
			fail(enumJSON("retention", s.Retention, &cfg.Retention))
			fail(enumJSON("storage", s.Storage, &cfg.Storage))
			fail(enumJSON("discard", s.Discard, &cfg.Discard))
			fail(duration("maxAge", s.MaxAge, &cfg.MaxAge))
			fail(duration("duplicateWindow", s.DuplicateWindow, &cfg.Duplicates))
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Errorf("%s: the server refuses it: %v", f, err)
			}
		case "KeyValue":
			var kv nackKeyValue
			if err := decodeStrict(obj.Spec, &kv); err != nil {
				t.Fatalf("%s: spec: %v", f, err)
			}
			checkReplicas(t, f, kv.Replicas)
			cfg := jetstream.KeyValueConfig{Bucket: kv.Bucket, Description: kv.Description, History: uint8(kv.History), Replicas: 1, MaxBytes: kv.MaxBytes}
			if kv.MaxBytes == 0 {
				cfg.MaxBytes = -1
			}
			fail(enumJSON("storage", kv.Storage, &cfg.Storage))
			fail(duration("ttl", kv.TTL, &cfg.TTL))
			if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
				t.Errorf("%s: the server refuses it: %v", f, err)
			}
		case "Consumer":
			var c nackConsumer
			if err := decodeStrict(obj.Spec, &c); err != nil {
				t.Fatalf("%s: spec: %v", f, err)
			}
			checkReplicas(t, f, c.Replicas)
			cfg := jetstream.ConsumerConfig{Durable: c.DurableName, Description: c.Description, FilterSubject: c.FilterSubject,
				MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending, Replicas: 1}
			fail(enumJSON("ackPolicy", c.AckPolicy, &cfg.AckPolicy))
			fail(enumJSON("deliverPolicy", c.DeliverPolicy, &cfg.DeliverPolicy))
			fail(duration("ackWait", c.AckWait, &cfg.AckWait))
			consumers = append(consumers, func() { // after every stream exists
				if _, err := js.CreateConsumer(ctx, c.StreamName, cfg); err != nil {
					t.Errorf("%s: the server refuses it on stream %s: %v", f, c.StreamName, err)
				}
			})
		default:
			t.Errorf("%s: kind %q, want Stream, Consumer or KeyValue", f, obj.Kind)
		}
	}
	for _, create := range consumers {
		create()
	}
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	readYAML(t, filepath.Join(nackDir, "kustomization.yaml"), &kust)
	if diff := cmp.Diff(objects, slices.Sorted(slices.Values(kust.Resources))); diff != "" {
		t.Errorf("%s/kustomization.yaml must list every resource file, sorted (-files +listed):\n%s", nackDir, diff)
	}
}

func checkReplicas(t *testing.T, file string, n int) {
	t.Helper()
	if n != definitionReplicas {
		t.Errorf("%s: replicas %d, want %d like every definition", file, n, definitionReplicas)
	}
}

// enumJSON sets an enum of the jetstream package from its NACK spelling,
// which is the JSON spelling of the server's API ("limits", "file",
// "explicit", "all", ...).
func enumJSON(field, value string, v json.Unmarshaler) error {
	if value == "" {
		return nil
	}
	q, _ := json.Marshal(value)
	if err := v.UnmarshalJSON(q); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// duration parses a NACK duration ("168h", "2m").
func duration(field, value string, d *time.Duration) error {
	if value == "" {
		return nil
	}
	v, err := time.ParseDuration(value)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	*d = v
	return nil
}
