// A local stand-in for the GitHub REST API (issue comments), on 127.0.0.1: records every request and
// answers as api.github.com does, with Link-header pagination and 403 for a read-only token.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly authorization: string | undefined;
  readonly body: unknown;
}

export interface FakeComment {
  id: number;
  body: string;
  html_url: string;
  user: { login: string };
  created_at: string;
  updated_at: string;
}

export interface FakeGithub {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Comments per "owner/repo#number". */
  readonly comments: Map<string, FakeComment[]>;
  /** Answer writes with 403 (the token of a fork pull request). */
  readOnly: boolean;
  /** Personal access tokens ("token <value>" authorization) and their users; any other token is an installation token (github-actions[bot]). */
  readonly users: Map<string, string>;
  /** GitHub App installation tokens and their bot logins (`<slug>[bot]`): /user refuses them, GraphQL's viewer answers. */
  readonly apps: Map<string, string>;
  /** Answer the next N requests with 502 Bad Gateway (transient errors the client should retry). */
  failNext: number;
  /** Answer the next N requests with a secondary rate limit (403 with retry-after). */
  secondaryLimitNext: number;
  close(): Promise<void>;
}

export async function startFakeGithub(): Promise<FakeGithub> {
  const requests: RecordedRequest[] = [];
  const comments = new Map<string, FakeComment[]>();
  let nextId = 1000;
  const state = { readOnly: false, failNext: 0, secondaryLimitNext: 0 };
  const users = new Map<string, string>();
  const apps = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown = undefined;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      requests.push({
        method: req.method ?? "",
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        authorization: req.headers.authorization,
        body,
      });
      const send = (status: number, data: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
        res.end(JSON.stringify(data));
      };
      if (!req.headers.authorization) return send(401, { message: "Requires authentication" });
      if (state.failNext > 0) {
        state.failNext--;
        return send(502, { message: "Bad Gateway" });
      }
      if (state.secondaryLimitNext > 0) {
        state.secondaryLimitNext--;
        return send(403, { message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." }, { "retry-after": "1" });
      }
      const token = req.headers.authorization.replace(/^(token|bearer) /i, "");
      const login = users.get(token) ?? apps.get(token);
      if (url.pathname === "/user" && req.method === "GET") {
        // An installation token (GITHUB_TOKEN or a GitHub App's) cannot read /user.
        return users.has(token) ? send(200, { login, id: 1, type: "User" }) : send(403, { message: "Resource not accessible by integration" });
      }
      if (url.pathname === "/graphql" && req.method === "POST") {
        const query = (body as { query?: string } | undefined)?.query ?? "";
        if (!/viewer\s*{\s*login\s*}/.test(query)) return send(200, { errors: [{ message: "the fake server answers only viewer { login }" }] });
        return send(200, { data: { viewer: { login: login ?? "github-actions[bot]" } } });
      }
      const list = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(url.pathname);
      const one = /^\/repos\/([^/]+)\/([^/]+)\/issues\/comments\/(\d+)$/.exec(url.pathname);
      const now = new Date().toISOString();
      if (list && req.method === "GET") {
        const all = comments.get(`${list[1]}/${list[2]}#${list[3]}`) ?? [];
        const perPage = Number(url.searchParams.get("per_page") ?? 30);
        const page = Number(url.searchParams.get("page") ?? 1);
        const last = Math.max(1, Math.ceil(all.length / perPage));
        const headers: Record<string, string> = {};
        if (page < last) {
          const next = new URL(url.toString());
          next.searchParams.set("page", String(page + 1));
          const lastUrl = new URL(url.toString());
          lastUrl.searchParams.set("page", String(last));
          headers.link = `<${serverUrl}${next.pathname}${next.search}>; rel="next", <${serverUrl}${lastUrl.pathname}${lastUrl.search}>; rel="last"`;
        }
        return send(200, all.slice((page - 1) * perPage, page * perPage), headers);
      }
      if (list && req.method === "POST") {
        if (state.readOnly) return send(403, { message: "Resource not accessible by integration" });
        const key = `${list[1]}/${list[2]}#${list[3]}`;
        const c: FakeComment = {
          id: nextId++,
          body: (body as { body: string }).body,
          html_url: `https://github.com/${list[1]}/${list[2]}/pull/${list[3]}#issuecomment-${nextId - 1}`,
          user: { login: login ?? "github-actions[bot]" },
          created_at: now,
          updated_at: now,
        };
        comments.set(key, [...(comments.get(key) ?? []), c]);
        return send(201, c);
      }
      if (one && req.method === "PATCH") {
        if (state.readOnly) return send(403, { message: "Resource not accessible by integration" });
        for (const cs of comments.values()) {
          const c = cs.find((x) => x.id === Number(one[3]));
          if (c) {
            c.body = (body as { body: string }).body;
            c.updated_at = now;
            return send(200, c);
          }
        }
        return send(404, { message: "Not Found" });
      }
      return send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: serverUrl,
    requests,
    comments,
    get readOnly() {
      return state.readOnly;
    },
    set readOnly(v: boolean) {
      state.readOnly = v;
    },
    users,
    apps,
    get failNext() {
      return state.failNext;
    },
    set failNext(v: number) {
      state.failNext = v;
    },
    get secondaryLimitNext() {
      return state.secondaryLimitNext;
    },
    set secondaryLimitNext(v: number) {
      state.secondaryLimitNext = v;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Comments seeded by other people, so the marker search has to page. */
export function seedComments(gh: FakeGithub, key: string, count: number): void {
  const list = gh.comments.get(key) ?? [];
  for (let i = 0; i < count; i++) {
    list.push({
      id: 1 + i,
      body: `an unrelated review comment ${i}`,
      html_url: `https://github.com/x#c${i}`,
      user: { login: "someone" },
      created_at: "",
      updated_at: "",
    });
  }
  gh.comments.set(key, list);
}
