#!/usr/bin/env python3
"""Generates embedded.cpp: the given files as byte arrays, keyed by their
repository path (what policies/embedded.hpp serves)."""
import os
import sys


def main():
    out, srcdir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    lines = ['#include "policies/embedded.hpp"', '', 'namespace nsbox {', 'namespace {']
    entries = []
    for i, path in enumerate(files):
        with open(path, 'rb') as f:
            data = f.read()
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(srcdir))
        body = ','.join(str(b) for b in data)
        lines.append(f'const unsigned char kFile{i}[] = {{{body},0}};')
        entries.append(f'    {{"{rel}", std::string_view(reinterpret_cast<const char*>(kFile{i}), {len(data)})}},')
    lines += ['}  // namespace', '',
              'const std::vector<EmbeddedFile>& embedded_files() {',
              '  static const std::vector<EmbeddedFile> files = {']
    lines += entries
    lines += ['  };', '  return files;', '}', '',
              'const EmbeddedFile* find_embedded(const std::string& name) {',
              '  for (const auto& f : embedded_files())',
              '    if (name == f.name) return &f;',
              '  return nullptr;', '}', '', '}  // namespace nsbox', '']
    with open(out, 'w') as f:
        f.write('\n'.join(lines))


if __name__ == '__main__':
    main()
