// nsbox-template: a Python runtime's template (sandbox/template.hpp). It
// starts the interpreter once, with the runtime tree's /usr in place of the
// host's so that every path a module recorded is the path it has inside a
// sandbox, imports the configured modules and compiles the runner, then
// clones sandboxes on request. In each sandbox's runner, after the child's
// setup and its seccomp filter, run_runner() goes on where exec would have
// started a fresh interpreter.
//
// It never runs user code: functions arrive in the sandbox, over its
// channel, after the clone. Started by the spawner or `nsbox run` with its
// socket on fd 3, on which its options arrive and a start-up error is
// reported.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "rootfs/rootfs.hpp"
#include "sandbox/heap_pack.hpp"
#include "sandbox/template.hpp"

namespace nsbox {
namespace {

constexpr int kSock = 3;
// Past 3.11's warm-up of a code object (8 calls) and a few misses of its
// specialised instructions.
constexpr int kWarmRounds = 16;

// The template's half: the runner's body (its classes, functions and JSON
// codec) runs once here, and so do the imports a sandbox's start-up needs
// (signal's enum classes alone are hundreds of objects). What they build is
// shared copy-on-write; building it again in each sandbox cost ~150 page
// faults, and as many private pages, per sandbox.
//
// The sandbox's half, after fork and seccomp: the environment and argv are
// the spec's, the signal dispositions Python's own start-up sets
// (PyConfig.install_signal_handlers is off in the template, which must keep
// the kernel's defaults), and the runner runs as __main__ as `python3
// runner.py` would run it. Everything it runs writes the code and function
// objects it touches (reference counts, 3.11's adaptive bytecode), so it
// stays short: _signal rather than signal's enum wrappers, which give the
// same dispositions.
// Around the imports of template_modules: the after-fork hooks they
// register are kept and registered again afterwards, in the same order,
// except random's, `_inst.seed`, which becomes two C calls on the same
// instance: its C base method (the same re-seed from os.urandom) and the
// reset of gauss_next that the Python method also does. The Python method
// runs frames and touches objects all over the shared heap: ~30 more copied
// pages in every sandbox. A module that kept the recorder (`from os import
// register_at_fork`) reaches the real function through it afterwards; the
// recorder checks its arguments as the real one does.
constexpr const char* kForkHooksBefore = R"PY(
import os

def _nsbox_fork_hooks():
    real = os.register_at_fork
    kept, recording = [], [True]
    names = {"before", "after_in_child", "after_in_parent"}

    def register_at_fork(**hooks):
        if not recording[0]:
            return real(**hooks)
        if not hooks or not set(hooks) <= names:
            raise TypeError("register_at_fork() takes the keyword arguments %s, at least one"
                            % ", ".join(sorted(names)))
        for name, hook in hooks.items():
            if not callable(hook):
                raise TypeError("'%s' must be callable, not %s" % (name, type(hook).__name__))
        kept.append(hooks)

    def replay():
        import sys
        recording[0] = False
        os.register_at_fork = real
        rnd = sys.modules.get("random")
        for hooks in kept:
            if rnd is not None and hooks.get("after_in_child") == rnd._inst.seed:
                import _random, functools
                real(after_in_child=_random.Random.seed.__get__(rnd._inst))
                hooks = dict(hooks, after_in_child=functools.partial(
                    setattr, rnd._inst, "gauss_next", None))
            real(**hooks)

    os.register_at_fork = register_at_fork
    return replay

_nsbox_replay_fork_hooks = _nsbox_fork_hooks()
del _nsbox_fork_hooks
)PY";

constexpr const char* kForkHooksAfter = R"PY(
_nsbox_replay_fork_hooks()
del _nsbox_replay_fork_hooks
)PY";

constexpr const char* kBootstrap = R"PY(
import builtins, os, signal, sys
from _signal import SIG_IGN, SIGINT, SIGPIPE, SIGXFSZ, default_int_handler
from _signal import signal as _set_signal

def _nsbox_load(source, path):
    # As __main__, so that every class and function it defines says so, but
    # without its last statement, the guard that calls main().
    import ast
    tree = ast.parse(source, path)
    guard = tree.body[-1] if tree.body else None
    if not (isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'"):
        raise ValueError("does not end with its `if __name__ == '__main__':` guard")
    del tree.body[-1]
    main = type(sys)("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    main.__cached__ = None
    main.__annotations__ = {}
    exec(compile(tree, path, "exec", dont_inherit=True), main.__dict__)
    return main

def _nsbox_warm(main, rounds):
    # The runner's own request path (a frame read, load, invoke, the reply) run here, over a
    # pipe pair, on a built-in function: Python 3.11 writes to a code object while it warms
    # it up (its warm-up counter, then its specialised instructions' caches), so a path first
    # run in a clone copies the pages of every code object on it. Nothing of it stays: its
    # module, its sys.path entry and its source go again.
    source = b"def handler(event, context):\n    return {'n': event, 'name': context.function_name}\n"
    path = "/nsbox-warm-up/_nsbox_warm_up.py"
    path_before, previous = list(sys.path), sys.modules.get("_nsbox_warm_up")
    frames = [(main.encode_envelope({"type": "load", "function": path, "handler": "handler"}),
               source)]
    for n in range(3):
        context = {"function_name": "warm", "function_version": "$LATEST",
                   "memory_limit_mb": 128, "request_id": "w%d" % n, "deadline_ms": 2**40}
        invoke = {"type": "invoke", "id": "w%d" % n, "context": context}
        frames.append((main.encode_envelope(invoke), b"%d" % n))
    for i in range(rounds):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            chan = main.Channel(req_r, rep_w)
            daemon = main.Channel(rep_r, req_w)  # the other side, framing as the runner does
            runner = main.Runner(chan)
            for envelope, payload in frames:
                daemon.send_frame(envelope, payload)
                chan.send(runner.handle(*chan.read()))
                reply = main.json_loads(daemon.read()[0])
                if reply["type"] not in ("ready", "result") or not reply.get("ok", True):
                    raise RuntimeError("the warm-up's own function failed: %r" % reply)
        finally:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
    # Modules the path imported stay, as the template's other imports do.
    sys.path[:] = path_before
    if previous is None:
        sys.modules.pop("_nsbox_warm_up", None)
    else:
        sys.modules["_nsbox_warm_up"] = previous
    main._SOURCES.clear()

def _nsbox_enter(main, orig_argv, env):
    argv = orig_argv[1:]
    while argv and argv[0].startswith("-"):
        argv = argv[1:]
    _set_signal(SIGINT, default_int_handler)
    _set_signal(SIGPIPE, SIG_IGN)
    _set_signal(SIGXFSZ, SIG_IGN)
    for k in list(os.environ):
        del os.environ[k]
    for kv in env:
        k, _, v = kv.partition("=")
        os.environ[k] = v
    sys.argv = list(argv)
    sys.orig_argv = list(orig_argv)
    sys.modules["__main__"] = main
    main.run(argv[1:], _nsbox_exit)
)PY";

// Exported by libpython, though not declared in its public headers: the
// table of pymalloc's size classes that sys._debugmallocstats() prints.
extern "C" int _PyObject_DebugMallocStats(FILE* out);

// A clone's way out (runner.py's run()): libc's stdio buffers flushed, as
// exit() would (a C extension's printf), then _exit: no atexit hooks and no
// finalization, which would copy the shared heap page by page.
PyObject* flush_and_exit(PyObject*, PyObject* code) {
  long status = PyLong_AsLong(code);
  if (status == -1 && PyErr_Occurred()) return nullptr;
  fflush(nullptr);
  _exit(static_cast<int>(status));
}
PyMethodDef g_exit_def = {"_nsbox_exit", flush_and_exit, METH_O, nullptr};

PyObject* g_enter = nullptr;   // _nsbox_enter
PyObject* g_runner = nullptr;  // the runner's module, its body run once here

// The runtime tree may not be under /usr, which the template replaces.
Status check_options(const TemplateOptions& o) {
  if (o.rootfs.empty() || o.rootfs[0] != '/')
    return make_error("nsbox-template", "the rootfs must be an absolute path");
  if (o.rootfs == "/usr" || o.rootfs.starts_with("/usr/"))
    return make_error("nsbox-template",
                      o.rootfs + " is under /usr, which the template replaces with the runtime's");
  return {};
}

// A mount namespace of our own whose /usr is the runtime tree's: the
// interpreter's prefix, sys.path and every module's __file__ are then the
// paths a sandbox sees after its pivot_root. Everything else stays the
// host's: each sandbox's own setup needs the host's stage dir, rootfs and
// a fully visible /proc (docs/architecture.md §3, step 5).
Status enter_runtime_tree(const std::string& rootfs, bool quiet) {
  if (unshare(CLONE_NEWNS) != 0) return sys_error("unshare", "CLONE_NEWNS");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return sys_error("mount", "make / private");
  std::string usr = rootfs + "/usr";
  if (mount(usr.c_str(), "/usr", nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return sys_error("mount", usr + " on /usr");
  if (mount(nullptr, "/usr", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0)
    return sys_error("mount", "remount /usr read-only");
  // A sandbox's /proc/self/exe is the template's: make it the runtime's
  // interpreter, as an exec'd runner's is, rather than a host path. Best
  // effort: without it the link names where nsbox-template is installed.
  int exe = open(kHostPython, O_RDONLY | O_CLOEXEC);
  if ((exe < 0 || prctl(PR_SET_MM, PR_SET_MM_EXE_FILE, exe, 0, 0) != 0) && !quiet) {
    const int err = errno;
    fprintf(stderr,
            "nsbox-template: note: sandboxes' /proc/self/exe names this program, not %s: %s: "
            "%s%s\n",
            kHostPython, exe < 0 ? "open" : "prctl(PR_SET_MM_EXE_FILE)", strerror(err),
            err == EPERM ? " (it needs CAP_SYS_RESOURCE, which this host withholds)" : "");
  }
  if (exe >= 0) close(exe);
  return {};
}

std::string py_error_text() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  std::string out = "unknown error";
  if (value) {
    if (PyObject* s = PyObject_Str(value)) {
      if (const char* c = PyUnicode_AsUTF8(s)) out = c;
      Py_DECREF(s);
    }
  }
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  PyErr_Clear();
  return out;
}

Status start_python(const TemplateOptions& o) {
  // As `python3 -I -S` starts in a sandbox: the locale configured (LC_CTYPE
  // from LANG=C.UTF-8, which the template's environment carries) and UTF-8
  // mode on, so that the encodings of stdio, file names and open() are the
  // exec'd runner's; sys.flags is compared in tests/probes/interpreter.py.
  PyPreConfig pre;
  PyPreConfig_InitIsolatedConfig(&pre);
  pre.configure_locale = 1;
  pre.utf8_mode = 1;
  PyStatus ps = Py_PreInitialize(&pre);
  if (PyStatus_Exception(ps))
    return make_error("Python pre-initialisation", ps.err_msg ? ps.err_msg : "failed");
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.site_import = 0;
  // As -I leaves it (PYTHONDONTWRITEBYTECODE is ignored); nothing can be
  // written anyway: /usr is read-only here and in every sandbox.
  config.write_bytecode = 1;
  config.buffered_stdio = 0;
  config.install_signal_handlers = 0;
  config.parse_argv = 0;
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, kHostPython);
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st))
    return make_error("Python start-up", st.err_msg ? st.err_msg : "failed");

  PyObject* globals = PyDict_New();
  PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
  PyObject* exit_fn = PyCFunction_New(&g_exit_def, nullptr);
  if (!exit_fn || PyDict_SetItemString(globals, "_nsbox_exit", exit_fn) != 0)
    return make_error("Python", "_nsbox_exit: " + py_error_text());
  Py_DECREF(exit_fn);
  auto run = [globals](const char* code, const char* what) -> Status {
    PyObject* r = PyRun_String(code, Py_file_input, globals, globals);
    if (!r) return make_error(what, py_error_text());
    Py_DECREF(r);
    return {};
  };
  TRY(run(kForkHooksBefore, "template bootstrap (fork hooks)"));
  for (const auto& m : o.modules) {
    PyObject* mod = PyImport_ImportModule(m.c_str());
    if (!mod) return make_error("import " + m, py_error_text());
    Py_DECREF(mod);
  }
  TRY(run(kForkHooksAfter, "template bootstrap (fork hooks)"));
  TRY(run(kBootstrap, "template bootstrap"));
  g_enter = PyDict_GetItemString(globals, "_nsbox_enter");
  Py_XINCREF(g_enter);

  std::string path = o.rootfs + kRunnerPath;
  std::ifstream in(path, std::ios::binary);
  if (!in) return sys_error("open", path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string source = text.str();
  PyObject* load = PyDict_GetItemString(globals, "_nsbox_load");
  PyObject* source_obj = PyBytes_FromStringAndSize(source.data(), Py_ssize_t(source.size()));
  PyObject* path_obj = PyUnicode_FromString(kRunnerPath);
  g_runner = load && source_obj && path_obj
                 ? PyObject_CallFunctionObjArgs(load, source_obj, path_obj, nullptr)
                 : nullptr;
  Py_XDECREF(source_obj);
  Py_XDECREF(path_obj);
  if (!g_runner) return make_error(std::string("load ") + kRunnerPath, py_error_text());
  PyObject* warm = PyDict_GetItemString(globals, "_nsbox_warm");
  PyObject* warmed = warm ? PyObject_CallFunction(warm, "Oi", g_runner, kWarmRounds) : nullptr;
  if (!warmed) return make_error("warming the runner up", py_error_text());
  Py_DECREF(warmed);

  // Everything allocated so far is the template's, shared by every sandbox:
  // gc.freeze() moves it out of the collector's generations, so a
  // collection in a sandbox never writes to (and un-shares) those pages.
  PyObject* gc = PyImport_ImportModule("gc");
  if (!gc) return make_error("import gc", py_error_text());
  for (const char* call : {"collect", "freeze"}) {
    PyObject* res = PyObject_CallMethod(gc, call, nullptr);
    if (!res) return make_error(std::string("gc.") + call, py_error_text());
    Py_DECREF(res);
  }
  Py_DECREF(gc);
  return {};
}

// The last thing before the first fork (sandbox/heap_pack.hpp): the free
// blocks of pymalloc's partly used pools and glibc's free chunks taken for
// good, so that a sandbox's allocations start on fresh pages rather than
// in holes scattered over pages it shares with this process. The template
// then holds all of its free space resident (the never-used tails of its
// pools, the pages inside large free chunks): once, for every clone.
// Best effort: a template that cannot pack still clones.
Status pack_heap() {
  {
    char* buf = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) return sys_error("open_memstream", "pymalloc statistics");
    int pymalloc = _PyObject_DebugMallocStats(f);
    fclose(f);
    std::string text(buf ? buf : "", len);
    free(buf);
    if (pymalloc)
      for (const PoolClass& c : parse_pymalloc_classes(text))
        for (long i = 0; i < c.avail; i++)
          if (!PyObject_Malloc(c.block_size)) return make_error("pymalloc", "out of memory");
  }
  // Last: everything above freed what it allocated, which left holes.
  fill_malloc_holes();
  return {};
}

PyObject* str_list(char* const* v) {
  PyObject* list = PyList_New(0);
  for (; *v; v++) {
    PyObject* s = PyUnicode_DecodeFSDefault(*v);
    PyList_Append(list, s);
    Py_DECREF(s);
  }
  return list;
}

// In the sandbox's runner process, after its seccomp filter: what the
// interpreter would do after `exec python3`, minus the start-up.
void run_runner(const ChildPlan& plan) {
  PyOS_AfterFork_Child();  // the interpreter's own after-fork work and os.register_at_fork hooks
  PyObject* argv = str_list(plan.argv.data());
  PyObject* env = str_list(plan.envp.data());
  PyObject* r = PyObject_CallFunctionObjArgs(g_enter, g_runner, argv, env, nullptr);
  // The runner ends in flush_and_exit. Only an exception that escapes it
  // gets here: printed (a SystemExit exits with its code, as from
  // `python3 runner.py`), then status 1.
  if (!r) PyErr_Print();
  fflush(nullptr);
  _exit(r ? 0 : 1);
}

int template_main() {
  // Dies with whoever started it; the sandboxes it made are that process's
  // children, not ours.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_NAME, "nsbox-template");
  if (getppid() == 1) return 1;
  Status init = [&]() -> Status {
    if (geteuid() != 0)
      return make_error("nsbox-template",
                        "needs root: it clones each sandbox as its own host uid "
                        "(use the exec factory unprivileged)");
    TemplateOptions o = TRY(template_receive_options(kSock));
    TRY(check_options(o));
    TRY(enter_runtime_tree(o.rootfs, o.quiet));
    TRY(template_share_root(o.rootfs));
    TRY(start_python(o));
    if (Status s = pack_heap(); !s)
      fprintf(stderr, "nsbox-template: warning: heap not packed: %s\n",
              s.error().message().c_str());
    return {};
  }();
  if (Status s = template_send_ready(kSock, init); !s || !init) return 1;
  // Whatever a configured module printed is not any sandbox's to flush
  // (each clone's exit flushes libc's buffers into its own log).
  fflush(nullptr);
  template_serve(kSock, run_runner);
}

}  // namespace
}  // namespace nsbox

int main() {
  return nsbox::template_main();
}
