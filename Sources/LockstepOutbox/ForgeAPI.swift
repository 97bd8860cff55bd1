import Foundation
import LockstepConfig
import NIOHTTP1

/// The few endpoints of each forge the outbox uses, with their real paths, headers and JSON
/// (GitHub REST, GitLab REST v4, Gitea/Forgejo API v1).
struct ForgeAPI: Sendable {
    let settings: ForgeSettings
    let token: String

    /// `owner/name`, or GitLab's project path with its `/` encoded.
    private var project: String {
        switch settings.kind {
        case .github, .gitea: settings.repository
        case .gitlab: settings.repository.replacingOccurrences(of: "/", with: "%2F")
        }
    }

    private var base: String {
        switch settings.kind {
        case .github, .gitea: "\(settings.apiURL)/repos/\(project)"
        case .gitlab: "\(settings.apiURL)/projects/\(project)"
        }
    }

    var headers: [(String, String)] {
        var headers = [("User-Agent", "lockstep"), ("Content-Type", "application/json")]
        switch settings.kind {
        case .github:
            headers += [("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28"),
                        ("Authorization", "Bearer \(token)")]
        case .gitlab:
            headers += [("Accept", "application/json"), ("PRIVATE-TOKEN", token)]
        case .gitea:
            headers += [("Accept", "application/json"), ("Authorization", "token \(token)")]
        }
        return headers
    }

    // MARK: Pull request of a commit

    /// Where to ask which pull request brought `commit`.
    func pullLookup(commit: String) -> String {
        switch settings.kind {
        case .github: "\(base)/commits/\(commit)/pulls"
        case .gitlab: "\(base)/repository/commits/\(commit)/merge_requests"
        case .gitea: "\(base)/commits/\(commit)/pull"
        }
    }

    private struct GitHubPull: Decodable {
        var number: Int
        var merge_commit_sha: String?
        var merged_at: String?
    }
    private struct GitLabMergeRequest: Decodable {
        var iid: Int
        var merge_commit_sha: String?
        var squash_commit_sha: String?
        var state: String?
    }
    private struct GiteaPull: Decodable {
        var number: Int
    }

    /// The pull request's number from the lookup's answer (nil: the forge knows none). The one
    /// whose merge commit is `commit` wins, then a merged one, then the first.
    func pull(from answer: HTTPAnswer, commit: String) throws(SendFailure) -> String? {
        if answer.status == 404 { return nil }
        guard (200..<300).contains(answer.status) else {
            throw .permanent(reason: "the pull request lookup was refused with HTTP \(answer.status)")
        }
        switch settings.kind {
        case .github:
            let pulls = try answer.decoded([GitHubPull].self, "the pull requests of a commit")
            let chosen = pulls.first { $0.merge_commit_sha == commit } ?? pulls.first { $0.merged_at != nil } ?? pulls.first
            return chosen.map { String($0.number) }
        case .gitlab:
            let requests = try answer.decoded([GitLabMergeRequest].self, "the merge requests of a commit")
            let chosen = requests.first { $0.merge_commit_sha == commit || $0.squash_commit_sha == commit }
                ?? requests.first { $0.state == "merged" } ?? requests.first
            return chosen.map { String($0.iid) }
        case .gitea:
            return String(try answer.decoded(GiteaPull.self, "the pull request of a commit").number)
        }
    }

    // MARK: Comments

    func commentsURL(pull: String) -> String {
        switch settings.kind {
        case .github, .gitea: "\(base)/issues/\(pull)/comments"
        case .gitlab: "\(base)/merge_requests/\(pull)/notes"
        }
    }

    /// Where the run's comment is listed: GitHub and GitLab page (100 at most per page); Gitea
    /// answers every comment at once.
    func listComments(pull: String) -> String {
        switch settings.kind {
        case .github: commentsURL(pull: pull) + "?per_page=100"
        case .gitlab: commentsURL(pull: pull) + "?per_page=100&sort=asc"
        case .gitea: commentsURL(pull: pull)
        }
    }

    func editComment(pull: String, comment: String) -> (HTTPMethod, String) {
        switch settings.kind {
        case .github, .gitea: (.PATCH, "\(base)/issues/comments/\(comment)")
        case .gitlab: (.PUT, "\(base)/merge_requests/\(pull)/notes/\(comment)")
        }
    }

    private struct Comment: Decodable {
        var id: Int
        var body: String?
    }

    /// The id of a comment the forge just wrote.
    func commentID(from answer: HTTPAnswer) throws(SendFailure) -> String {
        String(try answer.decoded(Comment.self, "the comment written").id)
    }

    /// The id of the comment holding `marker` in a listing, if any.
    func comment(in answer: HTTPAnswer, marker: String) throws(SendFailure) -> String? {
        try answer.decoded([Comment].self, "the comments of a pull request")
            .first { $0.body?.contains(marker) == true }.map { String($0.id) }
    }

    // MARK: Statuses

    func statusURL(commit: String) -> String {
        "\(base)/statuses/\(commit)"
    }

    /// The forge's word for an outcome.
    func state(_ outcome: RunReport.StatusOutcome) -> String {
        switch (settings.kind, outcome) {
        case (_, .pending): "pending"
        case (.gitlab, .running): "running"
        case (_, .running): "pending"
        case (_, .success): "success"
        case (.gitlab, .failure): "failed"
        case (_, .failure): "failure"
        case (.gitlab, .cancelled): "canceled"
        case (.github, .cancelled): "error"
        case (.gitea, .cancelled): "warning"
        }
    }

    func statusBody(outcome: RunReport.StatusOutcome, description: String, context: String, targetURL: String?) -> Data {
        var body: [String: String] = ["state": state(outcome), "description": description]
        body[settings.kind == .gitlab ? "name" : "context"] = context
        if let targetURL { body["target_url"] = targetURL }
        return Self.json(body)
    }

    static func json(_ object: [String: String]) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(object)) ?? Data("{}".utf8)
    }
}
