// Command lua-health runs Argo CD resource health checks the way Argo CD does: each
// health.lua runs in gopher-lua (Lua 5.1, Argo CD's interpreter) with the object as the
// global `obj`, and must return {status = ..., message = ...}. It checks every case of
// the health_test.yaml beside each health.lua under the given directories, in Argo CD's
// own layout (<group>/<Kind>/health.lua, health_test.yaml, testdata/).
//
//	lua-health DIR...              run the health_test.yaml cases under each DIR
//	lua-health eval health.lua     print the health of the JSON objects on stdin (one
//	                               object or an array), one JSON line each
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type testFile struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lua-health DIR...")
		os.Exit(2)
	}
	if os.Args[1] == "eval" && len(os.Args) == 3 {
		evalStdin(os.Args[2])
		return
	}
	failures, cases := 0, 0
	for _, root := range os.Args[1:] {
		scripts, err := filepath.Glob(filepath.Join(root, "*", "*", "health.lua"))
		if err != nil || len(scripts) == 0 {
			fmt.Fprintf(os.Stderr, "no <group>/<Kind>/health.lua under %s\n", root)
			os.Exit(1)
		}
		for _, script := range scripts {
			n, failed := runTests(filepath.Dir(script))
			cases += n
			failures += failed
		}
	}
	fmt.Printf("%d health check cases, %d failed\n", cases, failures)
	if failures > 0 {
		os.Exit(1)
	}
}

// evalStdin prints the health of each object on stdin under the script at path.
func evalStdin(path string) {
	script, err := os.ReadFile(path)
	check(err)
	input, err := io.ReadAll(os.Stdin)
	check(err)
	var objects []map[string]interface{}
	if json.Unmarshal(input, &objects) != nil {
		var single map[string]interface{}
		check(json.Unmarshal(input, &single))
		objects = []map[string]interface{}{single}
	}
	out := json.NewEncoder(os.Stdout)
	for _, object := range objects {
		status, message, err := evaluate(string(script), object)
		check(err)
		name, _ := object["metadata"].(map[string]interface{})["name"].(string)
		check(out.Encode(map[string]string{"name": name, "status": status, "message": message}))
	}
}

// runTests runs every case of dir/health_test.yaml: (cases, failures).
func runTests(dir string) (int, int) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	check(err)
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	check(err)
	var tests testFile
	check(yaml.UnmarshalStrict(raw, &tests))
	if len(tests.Tests) == 0 {
		check(fmt.Errorf("%s/health_test.yaml has no tests", dir))
	}
	failures := 0
	for _, test := range tests.Tests {
		input, err := os.ReadFile(filepath.Join(dir, test.InputPath))
		check(err)
		var object map[string]interface{}
		check(yaml.Unmarshal(input, &object))
		status, message, err := evaluate(string(script), object)
		want := test.HealthStatus
		switch {
		case err != nil:
			fmt.Printf("FAIL %s/%s: %v\n", dir, test.InputPath, err)
			failures++
		case status != want.Status || (want.Message != "" && message != want.Message):
			fmt.Printf("FAIL %s/%s: got %s %q, want %s %q\n", dir, test.InputPath, status, message, want.Status, want.Message)
			failures++
		default:
			fmt.Printf("ok   %s/%s: %s\n", dir, test.InputPath, status)
		}
	}
	return len(tests.Tests), failures
}

// evaluate runs a health script on one object with the libraries Argo CD opens.
func evaluate(script string, object map[string]interface{}) (string, string, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		state.Push(state.NewFunction(lib.open))
		state.Push(lua.LString(lib.name))
		state.Call(1, 0)
	}
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return "", "", err
	}
	result, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health.lua returned %s, not a table", state.Get(-1).Type())
	}
	return lua.LVAsString(result.RawGetString("status")), lua.LVAsString(result.RawGetString("message")), nil
}

// toLua converts decoded JSON as Argo CD does: objects and arrays become tables.
func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case map[string]interface{}:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []interface{}:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	default:
		check(fmt.Errorf("unexpected JSON value %T", value))
		return lua.LNil
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "lua-health:", err)
		os.Exit(1)
	}
}
