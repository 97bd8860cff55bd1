import Mustache

/// The review UI's pages, as Mustache templates: `{{name}}` is always HTML-escaped, and the
/// only unescaped insertion (`{{{body}}}` in the layout) takes a page these templates rendered.
/// No script anywhere: every page works with the strict Content-Security-Policy the UI sends.
enum UITemplates {
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in [("layout", layout), ("signin", signin), ("board", board), ("run", run), ("tags", tags),
                             ("message", message)] {
            // The templates are constants of this file: one that does not parse is a bug caught by every UI test.
            try! library.register(text, named: name)
        }
        return library
    }()

    static let layout = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    {{#refresh}}<meta http-equiv="refresh" content="{{refresh}}">{{/refresh}}
    <title>{{title}} · Lockstep</title><link rel="stylesheet" href="/ui/style.css"></head>
    <body><header><a class="home" href="/ui/board">Lockstep</a>
    {{#identity}}<span class="who">{{identity}}</span><form class="signout" method="post" action="/ui/signout"><input type="hidden" name="csrf" value="{{csrf}}"><button>Sign out</button></form>{{/identity}}
    </header>
    {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
    <main>{{{body}}}</main></body></html>

    """

    static let signin = """
    <h1>Sign in</h1>
    {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
    <form method="post" action="/ui/signin" class="signin">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label>API token <input type="password" name="token" autocomplete="current-password" required maxlength="4096"></label>
    <button>Sign in</button>
    </form>
    <p class="muted">The token is the one `lockstep` uses. It is exchanged for a session cookie and is not kept by the browser.</p>

    """

    static let board = """
    <h1>Promotion board</h1>
    {{#hasProblems}}<section class="problems"><h2>Problems</h2><ul>{{#problems}}<li><code>{{code}}</code> {{message}}</li>{{/problems}}</ul></section>{{/hasProblems}}
    <div class="scroll"><table class="board">
    <thead><tr><th>Project</th>{{#environments}}<th><a href="/ui/environments/{{name}}/tags">{{name}}</a>{{#from}}<small> after {{from}}</small>{{/from}}<br><small>{{required}} approval(s)</small></th>{{/environments}}</tr></thead>
    <tbody>{{#rows}}<tr><th>{{project}}</th>{{#cells}}<td class="cell">{{#served}}
    <div>applied <b>{{applied}}</b></div><div>desired <b>{{desired}}</b></div>
    {{#pending}}<div class="pending state-{{state}}"><a href="/ui/runs/{{id}}">{{version}} · {{state}}</a></div>{{/pending}}
    {{#warnings}}<div class="warn">{{.}}</div>{{/warnings}}
    {{/served}}{{^served}}<span class="muted">not served here</span>{{/served}}</td>{{/cells}}</tr>{{/rows}}</tbody>
    </table></div>
    <h2>Recent runs</h2>
    <table class="runs"><tr><th>Run</th><th>Target</th><th>Version</th><th>State</th><th>Updated</th></tr>
    {{#runs}}<tr><td><a href="/ui/runs/{{id}}">{{id}}</a></td><td>{{project}} → {{environment}}</td><td>{{version}}</td><td class="state-{{state}}">{{state}}</td><td>{{updated}}</td></tr>{{/runs}}
    </table>

    """

    static let run = """
    <h1>{{project}} → {{environment}} {{version}} <span class="state state-{{state}}">{{state}}</span></h1>
    <dl class="facts"><dt>Run</dt><dd><code>{{id}}</code></dd><dt>Tag</dt><dd><code>{{tag}}</code></dd>
    <dt>Commit</dt><dd><code>{{commit}}</code></dd><dt>Tree</dt><dd><code>{{tree}}</code></dd>
    {{#tagger}}<dt>Tagged by</dt><dd>{{tagger}}</dd>{{/tagger}}
    {{#signer}}<dt>Signed by</dt><dd>{{signer}}, verified</dd>{{/signer}}
    {{#prior_state}}<dt>Planned against</dt><dd>{{prior_state}} (checked again before apply)</dd>{{/prior_state}}
    {{#digest}}<dt>Plan digest</dt><dd><code>{{digest}}</code></dd>{{/digest}}{{#rollback}}<dt>Rollback</dt><dd>yes</dd>{{/rollback}}</dl>
    {{#tagMessage}}<h2>Tag message</h2><pre class="tag-message">{{tagMessage}}</pre>{{/tagMessage}}
    {{#commitMessage}}<details class="commit-message" open><summary>Commit message (the merged pull request)</summary><pre>{{commitMessage}}</pre></details>{{/commitMessage}}
    {{#summary}}<h2>Plan</h2><p class="counts"><span class="create">+{{create}} create</span> <span class="update">~{{update}} update</span> <span class="replace">±{{replace}} replace</span> <span class="delete">-{{delete}} destroy</span></p>
    {{#hasDestroyed}}<div class="destroy"><h3>Destroyed (or destroyed and created again)</h3><ul>{{#destroyed}}<li><code>{{.}}</code></li>{{/destroyed}}</ul></div>{{/hasDestroyed}}{{/summary}}
    {{#hasChecks}}<h2>Checks</h2><ul class="checks">{{#checks}}<li class="{{result}}">{{name}}: {{result}}{{#detail}} — {{detail}}{{/detail}}{{#overridable}} <small>(may be overridden by every approver, with a reason)</small>{{/overridable}}{{#output}}<details><summary>Output</summary><pre>{{output}}</pre></details>{{/output}}</li>{{/checks}}</ul>{{/hasChecks}}
    {{#held}}<p class="warn">{{held}}</p>{{/held}}
    <h2>Approvals: {{approvalCount}} of {{required}}</h2>
    <ul class="approvals">{{#approvals}}<li>{{identity}} at {{time}}, quoting <code>{{digest}}</code>{{#breakGlass}} <b class="warn">BREAK-GLASS</b>{{/breakGlass}}{{#overrides}}, overriding {{overrides}}{{/overrides}}{{#reason}}: {{reason}}{{/reason}}</li>{{/approvals}}</ul>
    {{#mayApprove}}<p>May still approve: {{mayApprove}}</p>{{/mayApprove}}
    {{#canApprove}}<form method="post" action="/ui/runs/{{id}}/approve" class="approve"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="digest" value="{{digest}}">{{#overrideChecks}}<input type="hidden" name="override_checks" value="{{overrideChecks}}"><label>Reason for overriding {{overrideChecks}} <input name="reason" required maxlength="1000"></label> {{/overrideChecks}}<button name="approve">Approve this plan</button> <small>digest <code>{{digest}}</code></small></form>{{/canApprove}}
    {{#canReject}}<form method="post" action="/ui/runs/{{id}}/reject" class="reject"><input type="hidden" name="csrf" value="{{csrf}}"><label>Reason <input name="reason" required maxlength="1000"></label> <button name="reject">Reject</button></form>{{/canReject}}
    {{#hasBlocks}}<h2>Plan text{{#truncated}} (the start only; the summary and checks cover the whole plan){{/truncated}}</h2>
    {{#blocks}}<details open><summary><code>{{title}}</code></summary><pre>{{text}}</pre></details>{{/blocks}}{{/hasBlocks}}
    {{#renderingNote}}<p class="muted">{{renderingNote}}</p>{{/renderingNote}}
    {{#output}}<details class="output"{{#moving}} open{{/moving}}><summary>Output{{#moving}} (live: this page reloads){{/moving}}</summary><pre>{{output}}</pre></details>{{/output}}
    {{#hasAlerts}}<h2>Alerts</h2><ul>{{#alerts}}<li class="warn"><code>{{code}}</code> {{message}}</li>{{/alerts}}</ul>{{/hasAlerts}}
    {{#hasRefusals}}<h2>Refused approvals</h2><ul>{{#refusals}}<li>{{identity}}: {{message}}</li>{{/refusals}}</ul>{{/hasRefusals}}
    <h2>Timeline</h2>
    <table class="timeline"><tr><th>Time</th><th>From</th><th>To</th><th>Reason</th><th>By</th></tr>
    {{#transitions}}<tr><td>{{time}}</td><td>{{from}}</td><td>{{to}}</td><td>{{reason}}{{#detail}}<br><small>{{detail}}</small>{{/detail}}</td><td>{{actor}}</td></tr>{{/transitions}}
    </table>

    """

    static let tags = """
    <h1>Release tags of {{environment}}</h1>
    <p class="muted">The daemon's own decisions, with every reason a tag was refused.</p>
    <table class="tags"><tr><th>Tag</th><th>Project</th><th>Version</th><th>Commit</th><th>Decision</th></tr>
    {{#decisions}}<tr class="{{decision}}"><td><code>{{tag}}</code></td><td>{{project}}</td><td>{{version}}</td><td><code>{{commit}}</code></td><td>{{decision}}{{#reasons}}<br><small><code>{{code}}</code> {{message}}</small>{{/reasons}}</td></tr>{{/decisions}}
    </table>

    """

    static let message = """
    <h1>{{heading}}</h1><p>{{text}}</p><p><a href="{{back}}">Back</a></p>

    """

    static let css = """
    body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafbfc}
    header{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#24292f;color:#fff}
    header a.home{color:#fff;font-weight:600;text-decoration:none}header .who{margin-left:auto}
    header form{display:inline}main{padding:1em;max-width:80em}
    table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:.35em .6em;vertical-align:top;text-align:left}
    .scroll{overflow-x:auto}.board td.cell{min-width:11em}.muted{color:#57606a}
    .warn{color:#9a6700}.error,.flash{padding:.5em;border-radius:4px}.error{background:#ffebe9}.flash{background:#ddf4ff;margin:1em}
    .destroy{background:#ffebe9;padding:.2em .8em;border-radius:4px}.delete{color:#cf222e}.create{color:#1a7f37}.replace{color:#bc4c00}
    .state{font-size:.7em;padding:.15em .5em;border-radius:1em;background:#eaeef2;vertical-align:middle}
    .state-awaiting_approval{background:#fff8c5}.state-failed,.state-interrupted{background:#ffebe9}.state-verified{background:#dafbe1}
    pre{white-space:pre-wrap;word-break:break-all;margin:.3em 0;background:#f6f8fa;padding:.5em}details{margin:.2em 0}
    dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dd{margin:0;word-break:break-all}
    form.approve button{background:#1a7f37;color:#fff;border:0;padding:.5em 1em;border-radius:4px}
    form.reject button{background:#cf222e;color:#fff;border:0;padding:.4em .8em;border-radius:4px}
    @media (max-width:40em){main{padding:.5em}th,td{padding:.25em .35em}}

    """
}
