import Foundation

// The pieces of an admin console page (`admin.mustache`): sections holding facts, a table, a form or a
// newly created secret. Built in Swift, rendered with HTML escaping; every POST form carries the CSRF token.

struct ConsolePage {
    var heading: String
    var lead: String?
    var notice: String?
    var problem: String?
    var sections: [ConsoleSection] = []

    init(_ heading: String, lead: String? = nil) {
        self.heading = heading
        self.lead = lead
    }

    mutating func add(_ section: ConsoleSection) { sections.append(section) }
}

struct ConsoleSection {
    var title: String?
    var id: String?
    var facts: [(String, String, code: Bool)] = []
    var table: ConsoleTable?
    var form: ConsoleForm?
    var secret: (clientID: String, secret: String)?

    init(_ title: String? = nil, id: String? = nil) {
        self.title = title
        self.id = id
    }

    static func facts(_ title: String?, _ facts: [(String, String, code: Bool)]) -> ConsoleSection {
        var s = ConsoleSection(title)
        s.facts = facts
        return s
    }

    static func table(_ title: String?, _ table: ConsoleTable, id: String? = nil) -> ConsoleSection {
        var s = ConsoleSection(title, id: id)
        s.table = table
        return s
    }

    static func form(_ title: String?, _ form: ConsoleForm) -> ConsoleSection {
        var s = ConsoleSection(title)
        s.form = form
        return s
    }
}

struct ConsoleTable {
    struct Cell {
        var text: String
        var href: String? = nil
        var code = false
    }
    struct Action {
        var label: String
        /// A link (GET, e.g. to a confirmation page) or a POST form.
        var link: String? = nil
        var post: String? = nil
        var fields: [(String, String)] = []
        var danger = false
    }
    struct Row {
        var cells: [Cell]
        var actions: [Action] = []
    }
    var columns: [String]
    var rows: [Row] = []
    var empty = "Nothing here yet."
    var next: String?
    var id: String?
}

struct ConsoleForm {
    enum Kind { case text, email, url, password, number, date, checkbox, textarea, select([(String, String)]) }
    struct Field {
        var name: String
        var label: String
        var kind: Kind = .text
        var value = ""
        var checked = false
        var required = false
        var help: String?
        var autocomplete: String?
    }
    var action: String
    var submit: String
    var method = "post"
    var fields: [Field] = []
    var hidden: [(String, String)] = []
    var danger = false
    var cancel: String?
    var id: String?
    /// Laid out in a row (list filters).
    var inline = false
}

extension ConsolePage {
    /// The template's values; `csrf` goes into every POST form.
    func values(csrf: String, nav: [(label: String, href: String)], current: String, adminName: String, readOnly: Bool)
        -> [String: Any]
    {
        var out: [String: Any] = [
            "wide": true, "heading": heading, "adminName": adminName, "readOnly": readOnly,
            "nav": nav.map { ["label": $0.label, "href": $0.href, "current": $0.href == current] as [String: Any] },
        ]
        if let lead { out["lead"] = lead }
        if let notice { out["notice"] = notice }
        if let problem { out["problem"] = problem }
        var fieldCounter = 0
        out["sections"] = sections.map { s -> [String: Any] in
            var v: [String: Any] = [:]
            if let title = s.title { v["title"] = title }
            if let id = s.id { v["id"] = id }
            v["facts"] = s.facts.map { ["label": $0.0, "value": $0.1, "code": $0.code] as [String: Any] }
            v["hasFacts"] = !s.facts.isEmpty
            if let secret = s.secret { v["secret"] = ["clientID": secret.clientID, "clientSecret": secret.secret] }
            if let t = s.table {
                let hasActions = t.rows.contains { !$0.actions.isEmpty }
                var table: [String: Any] = [
                    "columns": t.columns, "empty": t.empty, "hasActions": hasActions, "hasRows": !t.rows.isEmpty,
                    "rows": t.rows.map { row -> [String: Any] in
                        [
                            "hasActions": hasActions,
                            "cells": row.cells.map { c -> [String: Any] in
                                var cell: [String: Any] = ["text": c.text, "code": c.code]
                                if let href = c.href { cell["href"] = href }
                                return cell
                            },
                            "actions": row.actions.map { a -> [String: Any] in
                                var action: [String: Any] = ["label": a.label, "danger": a.danger, "csrf": csrf]
                                if let link = a.link { action["link"] = link }
                                if let post = a.post { action["post"] = post }
                                action["fields"] = a.fields.map { ["name": $0.0, "value": $0.1] }
                                return action
                            },
                        ]
                    },
                ]
                if let next = t.next { table["next"] = next }
                if let id = t.id { table["tableID"] = id }
                v["table"] = table
            }
            if let f = s.form {
                var form: [String: Any] = [
                    "method": f.method, "action": f.action, "submit": f.submit, "post": f.method == "post", "csrf": csrf,
                    "danger": f.danger, "inlineForm": f.inline,
                    "hidden": f.hidden.map { ["name": $0.0, "value": $0.1] },
                ]
                if let cancel = f.cancel { form["cancel"] = cancel }
                if let id = f.id { form["formID"] = id }
                form["fields"] = f.fields.map { field -> [String: Any] in
                    fieldCounter += 1
                    var v: [String: Any] = [
                        "name": field.name, "label": field.label, "value": field.value, "checked": field.checked,
                        "required": field.required, "fieldID": "f\(fieldCounter)-\(field.name)",
                    ]
                    if let help = field.help { v["help"] = help }
                    if let autocomplete = field.autocomplete { v["autocomplete"] = autocomplete }
                    switch field.kind {
                    case .checkbox: v["checkbox"] = true
                    case .textarea: v["textarea"] = true
                    case .select(let options):
                        v["select"] = true
                        v["options"] = options.map { ["value": $0.0, "label": $0.1, "selected": $0.0 == field.value] as [String: Any] }
                    case .text, .email, .url, .password, .number, .date:
                        v["input"] = true
                        v["type"] = {
                            switch field.kind {
                            case .email: return "email"
                            case .url: return "url"
                            case .password: return "password"
                            case .number: return "number"
                            case .date: return "date"
                            default: return "text"
                            }
                        }()
                    }
                    return v
                }
                v["form"] = form
            }
            return v
        }
        return out
    }
}

extension Int64 {
    /// A unix time as `2026-12-04 10:15 UTC` for the console.
    var consoleTime: String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(self)))
    }
}
