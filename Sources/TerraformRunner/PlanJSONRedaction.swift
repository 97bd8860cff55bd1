import Foundation

/// Redacts the JSON of `terraform show -json` before Lockstep keeps it.
///
/// Terraform prints sensitive values in clear in this JSON: values of
/// `sensitive` input variables under `variables` (FACTS.md), and attribute
/// values it marks in `after_sensitive` / `before_sensitive` /
/// `sensitive_values` next to them. Every such value is replaced with
/// ``Redactor/placeholder`` and returned, so the caller can also scrub it from
/// terraform's human rendering and anything else derived from the plan.
enum PlanJSONRedaction {
    private static let maskedPairs = [
        ("after", "after_sensitive"),
        ("before", "before_sensitive"),
        ("values", "sensitive_values"),
    ]

    static func redact(_ json: Data) throws -> (json: Data, secrets: Set<String>) {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        } catch {
            throw TerraformRunnerError(.malformedOutput, "terraform plan JSON could not be decoded")
        }
        var secrets = Set<String>()
        var root = walk(object, secrets: &secrets)
        if var dictionary = root as? [String: Any] {
            redactSensitiveVariables(&dictionary, secrets: &secrets)
            root = dictionary
        }
        let data = try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
        return (data, secrets)
    }

    /// Recurses through the document, applying every sensitivity mask it meets.
    private static func walk(_ value: Any, secrets: inout Set<String>) -> Any {
        if var dictionary = value as? [String: Any] {
            for (valueKey, maskKey) in maskedPairs {
                if let mask = dictionary[maskKey], let masked = dictionary[valueKey] {
                    dictionary[valueKey] = apply(mask: mask, to: masked, secrets: &secrets)
                }
            }
            // Outputs: {"sensitive": true, "value": ...}
            if let sensitive = dictionary["sensitive"] as? Bool, sensitive, let inner = dictionary["value"] {
                dictionary["value"] = apply(mask: true, to: inner, secrets: &secrets)
            }
            for (key, child) in dictionary {
                dictionary[key] = walk(child, secrets: &secrets)
            }
            return dictionary
        }
        if let array = value as? [Any] {
            return array.map { walk($0, secrets: &secrets) }
        }
        return value
    }

    private static func apply(mask: Any, to value: Any, secrets: inout Set<String>) -> Any {
        if let flag = mask as? Bool {
            guard flag else { return value }
            collect(value, into: &secrets)
            return value is NSNull ? value : Redactor.placeholder
        }
        if let masks = mask as? [String: Any], var dictionary = value as? [String: Any] {
            for (key, submask) in masks {
                if let inner = dictionary[key] {
                    dictionary[key] = apply(mask: submask, to: inner, secrets: &secrets)
                }
            }
            return dictionary
        }
        if let masks = mask as? [Any], var array = value as? [Any] {
            for index in array.indices where index < masks.count {
                array[index] = apply(mask: masks[index], to: array[index], secrets: &secrets)
            }
            return array
        }
        return value
    }

    /// `variables.NAME.value` for every variable the configuration marks sensitive.
    private static func redactSensitiveVariables(_ root: inout [String: Any], secrets: inout Set<String>) {
        guard var variables = root["variables"] as? [String: Any],
              let configuration = root["configuration"] as? [String: Any],
              let module = configuration["root_module"] as? [String: Any],
              let declared = module["variables"] as? [String: Any]
        else { return }
        for (name, declaration) in declared {
            guard let declaration = declaration as? [String: Any],
                  declaration["sensitive"] as? Bool == true,
                  var entry = variables[name] as? [String: Any],
                  let value = entry["value"]
            else { continue }
            entry["value"] = apply(mask: true, to: value, secrets: &secrets)
            variables[name] = entry
        }
        root["variables"] = variables
    }

    private static func collect(_ value: Any, into secrets: inout Set<String>) {
        switch value {
        case let string as String:
            secrets.insert(string)
        case let dictionary as [String: Any]:
            for child in dictionary.values { collect(child, into: &secrets) }
        case let array as [Any]:
            for child in array { collect(child, into: &secrets) }
        case let number as NSNumber:
            // A masked boolean is not worth redacting every "true" in the text.
            let text = number.stringValue
            if text != "true", text != "false" { secrets.insert(text) }
        default:
            break
        }
    }
}
