package main

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stage is one stage of the Dockerfile: its base and its instructions, with
// continuation lines joined.
type stage struct {
	from         string
	instructions [][2]string // keyword (upper case), arguments
}

// parseDockerfile reads the stages of a Dockerfile: enough of the syntax
// (comments, line continuations, one instruction a line) for ours.
func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var line string
	for _, raw := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && line == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			line += strings.TrimSpace(cont) + " "
			continue
		}
		line += trimmed
		keyword, args, _ := strings.Cut(line, " ")
		keyword, args, line = strings.ToUpper(keyword), strings.TrimSpace(args), ""
		if keyword == "FROM" {
			base, _, _ := strings.Cut(args, " ")
			stages = append(stages, stage{from: base})
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		last := &stages[len(stages)-1]
		last.instructions = append(last.instructions, [2]string{keyword, args})
	}
	return stages
}

// runtimeLayout is what the final stage gives the container.
type runtimeLayout struct {
	user, workdir string
	entrypoint    []string
	binary        string // where COPY put the manager
}

// dockerfileLayout derives the runtime layout from the final stage: the
// last USER, WORKDIR, ENTRYPOINT (exec form), and where COPY put manager.
func dockerfileLayout(t *testing.T, final stage) runtimeLayout {
	t.Helper()
	l := runtimeLayout{workdir: "/"}
	for _, in := range final.instructions {
		switch in[0] {
		case "USER":
			l.user = in[1]
		case "WORKDIR":
			l.workdir = path.Join(l.workdir, in[1])
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in[1]), &l.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: want the exec form: %v", in[1], err)
			}
		case "COPY":
			var operands []string
			for _, f := range strings.Fields(in[1]) {
				if !strings.HasPrefix(f, "--") {
					operands = append(operands, f)
				}
			}
			if len(operands) != 2 || path.Base(operands[0]) != "manager" {
				continue
			}
			dest := operands[1]
			if !path.IsAbs(dest) {
				dest = path.Join(l.workdir, dest)
			}
			if strings.HasSuffix(operands[1], "/") || operands[1] == "." {
				dest = path.Join(dest, path.Base(operands[0]))
			}
			l.binary = dest
		}
	}
	return l
}

// TestDockerfileAgrees holds the Dockerfile and this builder to one runtime
// layout: user, working directory, entrypoint, where the binary is, the base
// this builder stands in for, and the go build flags.
func TestDockerfileAgrees(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(moduleRoot, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a builder and a runtime stage", len(stages))
	}
	final := stages[len(stages)-1]
	if final.from != "gcr.io/distroless/static:nonroot" {
		t.Errorf("the Dockerfile's runtime base is %s; hack/image stands in for gcr.io/distroless/static:nonroot: update baseLayer", final.from)
	}
	want := dockerfileLayout(t, final)

	res, _ := hostBuild(t)
	cf, err := layoutImage(t, res, hostPlatform).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := runtimeLayout{user: cf.Config.User, workdir: cf.Config.WorkingDir, entrypoint: cf.Config.Entrypoint, binary: binaryPath}
	if got.user != want.user || got.workdir != want.workdir || !slices.Equal(got.entrypoint, want.entrypoint) || got.binary != want.binary {
		t.Errorf("image: %+v\nDockerfile: %+v", got, want)
	}

	var goBuild string
	for _, in := range stages[0].instructions {
		if in[0] == "RUN" && strings.Contains(in[1], "go build") {
			goBuild = in[1]
		}
	}
	flags := append([]string{"CGO_ENABLED=0", `-ldflags="` + goLinkFlags + `"`}, goBuildFlags...)
	for _, f := range flags {
		if !strings.Contains(goBuild, f) {
			t.Errorf("the Dockerfile's go build %q lacks %s, which hack/image uses", goBuild, f)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "Dockerfile")
	content := "ARG X=1\nFROM golang AS builder\nRUN go build \\\n  -trimpath -o m .\n\n# runtime\nfrom scratch\nWORKDIR /app\nCOPY --from=builder /w/manager bin/\nUSER 1:1\nENTRYPOINT [\"/app/bin/manager\", \"-v\"]\n"
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, file)
	if len(stages) != 2 || stages[0].from != "golang" || stages[1].from != "scratch" {
		t.Fatalf("stages %+v", stages)
	}
	if got := stages[0].instructions[0]; got != [2]string{"RUN", "go build -trimpath -o m ."} {
		t.Errorf("continued RUN: %q", got)
	}
	got := dockerfileLayout(t, stages[1])
	want := runtimeLayout{user: "1:1", workdir: "/app", entrypoint: []string{"/app/bin/manager", "-v"}, binary: "/app/bin/manager"}
	if got.user != want.user || got.workdir != want.workdir || !slices.Equal(got.entrypoint, want.entrypoint) || got.binary != want.binary {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
