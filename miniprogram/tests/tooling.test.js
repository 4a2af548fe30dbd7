// The mini-program checked with WeChat's own tooling: the DevTools compilers
// (miniprogram-compiler's wcc/wcsc) build every WXML and WXSS file, and the client
// type-checks against the official typings (miniprogram-api-typings) under tsc --checkJs.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const glob = require('glob');
const compiler = require('miniprogram-compiler');
const wcsc = require('miniprogram-compiler/src/wcsc');

const ROOT = path.join(__dirname, '..');
const IGNORE = ['tests/**', 'node_modules/**', 'miniprogram_npm/**'];
const app = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8'));

function compileWxss(root, files) {
  // wcsc returns (does not throw) its error.
  const result = wcsc(root, files.map((f) => f.slice(0, -'.wxss'.length)), {});
  if (result instanceof Error) throw result;
  return result;
}

test('every WXML file compiles with the DevTools compiler (wcc)', () => {
  const files = glob.sync('**/*.wxml', { cwd: ROOT, ignore: IGNORE });
  assert.ok(files.length >= app.pages.length, 'every page has a template');
  const js = compiler.wxmlToJs(ROOT, { wxmlList: files });
  for (const file of files) assert.ok(js.includes(file), `${file} is in the compiled output`);
});

test('every WXSS file compiles with the DevTools compiler (wcsc)', () => {
  const files = glob.sync('**/*.wxss', { cwd: ROOT, ignore: IGNORE });
  const result = compileWxss(ROOT, files);
  for (const file of files) assert.ok(result[file] !== undefined, `${file} compiled`);
});

test('the compilers reject a broken template and a broken style sheet', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-broken-'));
  fs.writeFileSync(path.join(dir, 'index.wxml'), '<view>{{unclosed</view><text');
  assert.throws(() => compiler.wxmlToJs(dir), /编译 .wxml 文件错误/);
  fs.writeFileSync(path.join(dir, 'index.wxss'), '.a { color: red; ');
  assert.throws(() => compileWxss(dir, ['index.wxss']));
});

test('the client type-checks against miniprogram-api-typings (tsc --checkJs, tsconfig.json)', () => {
  const tsc = path.join(__dirname, 'node_modules', '.bin', 'tsc');
  const run = spawnSync(tsc, ['-p', ROOT], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const config = JSON.parse(fs.readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8'));
  assert.equal(config.compilerOptions.checkJs, true);
  assert.deepEqual(config.compilerOptions.types, ['miniprogram-api-typings']);
});

test('the type check catches a wrong wx option name', () => {
  const dir = fs.mkdtempSync(path.join(ROOT, 'typecheck-probe-'));
  try {
    fs.writeFileSync(path.join(dir, 'wrong.js'), "wx.request({ url: 'https://a', enableChunk: true });\n");
    const tsc = path.join(__dirname, 'node_modules', '.bin', 'tsc');
    const run = spawnSync(tsc, ['-p', ROOT], { encoding: 'utf8' });
    assert.notEqual(run.status, 0);
    assert.match(run.stdout, /enableChunk/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every page in app.json has its four files, and the tab bar has icons WeChat accepts', () => {
  for (const page of app.pages) {
    for (const ext of ['js', 'json', 'wxml', 'wxss']) assert.ok(fs.existsSync(path.join(ROOT, `${page}.${ext}`)), `${page}.${ext}`);
  }
  assert.ok(app.tabBar.list.length >= 3);
  for (const tab of app.tabBar.list) {
    assert.ok(app.pages.includes(tab.pagePath), `${tab.pagePath} is a page`);
    for (const icon of [tab.iconPath, tab.selectedIconPath]) {
      const bytes = fs.readFileSync(path.join(ROOT, icon));
      assert.equal(bytes.subarray(1, 4).toString(), 'PNG', `${icon} is a PNG`);
      assert.ok(bytes.length <= 40 * 1024, `${icon} is at most 40 KB`);
    }
  }
  assert.equal(app.darkmode, true, 'dark mode on');
  const theme = JSON.parse(fs.readFileSync(path.join(ROOT, app.themeLocation), 'utf8'));
  for (const value of JSON.stringify(app).match(/@\w+/g)) {
    assert.ok(theme.light[value.slice(1)] && theme.dark[value.slice(1)], `${value} is in theme.json`);
  }
  const personas = JSON.parse(fs.readFileSync(path.join(ROOT, 'pages/personas/index.json'), 'utf8'));
  assert.equal(personas.enablePullDownRefresh, true, 'onPullDownRefresh is reachable');
});

test('the README states the base library the client needs', () => {
  const readme = fs.readFileSync(path.join(ROOT, '..', 'README.md'), 'utf8');
  assert.match(readme, /Base library: set the minimum to 2\.23\.0/);
  assert.match(readme, /enableChunked[^\n]*2\.20\.2/);
  assert.doesNotMatch(readme + fs.readFileSync(path.join(ROOT, 'config.js'), 'utf8'), /2\.20\.1/);
});
