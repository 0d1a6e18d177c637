//! The minimal EC2 API: the default VPC, its subnets (one per configured zone), its
//! default security group and the zones, through the official SDK and the aws CLI.

use aws_sdk_ec2::types::Filter;
use testkit::{error_code, Berth};

pub async fn ec2(b: &Berth) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

#[tokio::test]
async fn default_vpc_subnets_security_group_and_zones() {
    // AWS's default block, which test servers otherwise replace with one of their own.
    let b = Berth::start_with_args(
        env!("CARGO_BIN_EXE_berth"),
        &["--availability-zones", "a,b,d", "--vpc-cidr", "172.31.0.0/16"],
    )
    .await;
    let ec2 = ec2(&b).await;

    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    let [vpc] = vpcs.vpcs() else { panic!("one default VPC: {vpcs:?}") };
    let vpc_id = vpc.vpc_id().unwrap();
    assert!(vpc_id.starts_with("vpc-"));
    assert_eq!(vpc.is_default(), Some(true));
    assert_eq!(vpc.cidr_block(), Some("172.31.0.0/16"));
    let filtered =
        ec2.describe_vpcs().filters(Filter::builder().name("is-default").values("true").build()).send().await.unwrap();
    assert_eq!(filtered.vpcs().len(), 1);
    let none =
        ec2.describe_vpcs().filters(Filter::builder().name("vpc-id").values("vpc-0000").build()).send().await.unwrap();
    assert!(none.vpcs().is_empty());

    let subnets =
        ec2.describe_subnets().filters(Filter::builder().name("vpc-id").values(vpc_id).build()).send().await.unwrap();
    let zones: Vec<&str> = subnets.subnets().iter().map(|s| s.availability_zone().unwrap()).collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1d"]);
    assert!(subnets.subnets().iter().all(|s| s.default_for_az() == Some(true) && s.vpc_id() == Some(vpc_id)));
    let in_b = ec2
        .describe_subnets()
        .filters(Filter::builder().name("availability-zone").values("us-east-1b").build())
        .filters(Filter::builder().name("default-for-az").values("true").build())
        .send()
        .await
        .unwrap();
    assert_eq!(in_b.subnets().len(), 1);
    let wildcard = ec2
        .describe_subnets()
        .filters(Filter::builder().name("availability-zone").values("*-1?").build())
        .send()
        .await
        .unwrap();
    assert_eq!(wildcard.subnets().len(), 3);
    let by_id = ec2.describe_subnets().subnet_ids(in_b.subnets()[0].subnet_id().unwrap()).send().await.unwrap();
    assert_eq!(by_id.subnets()[0].availability_zone(), Some("us-east-1b"));

    let sgs = ec2.describe_security_groups().group_names("default").send().await.unwrap();
    let [sg] = sgs.security_groups() else { panic!("{sgs:?}") };
    assert_eq!(sg.vpc_id(), Some(vpc_id));
    assert!(sg.group_id().unwrap().starts_with("sg-"));
    let by_filter = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values("default").build())
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .unwrap();
    assert_eq!(by_filter.security_groups().len(), 1);

    let azs = ec2.describe_availability_zones().send().await.unwrap();
    let names: Vec<&str> = azs.availability_zones().iter().map(|z| z.zone_name().unwrap()).collect();
    assert_eq!(names, ["us-east-1a", "us-east-1b", "us-east-1d"]);
    assert_eq!(azs.availability_zones()[0].zone_id(), Some("use1-az1"));

    // The same ids in another region are other ids; in another account too.
    let west = aws_sdk_ec2::Client::new(&b.sdk_config(&b.key, "eu-west-1").await);
    let west_vpcs = west.describe_vpcs().send().await.unwrap();
    assert_ne!(west_vpcs.vpcs()[0].vpc_id(), Some(vpc_id));
    let again = ec2.describe_vpcs().send().await.unwrap();
    assert_eq!(again.vpcs()[0].vpc_id(), Some(vpc_id), "ids are stable");
}

#[tokio::test]
async fn unknown_ids_and_filters_are_ec2_errors() {
    let b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let e = ec2.describe_vpcs().vpc_ids("vpc-12345678").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");
    let e = ec2.describe_subnets().subnet_ids("subnet-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidSubnetID.NotFound");
    let e = ec2.describe_security_groups().group_ids("sg-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    let e = ec2
        .describe_subnets()
        .filters(Filter::builder().name("colour").values("blue").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let e = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidAction");
}

#[tokio::test]
async fn the_aws_cli_reads_the_subnets() {
    let b = crate::berth().await;
    let out = std::process::Command::new("aws")
        .args(["ec2", "describe-subnets", "--query", "Subnets[].AvailabilityZone", "--output", "text"])
        .envs(b.cli_env())
        .output()
        .expect("aws CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
}

fn web_rule(port: i32, cidr: &str) -> aws_sdk_ec2::types::IpPermission {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).description("web").build())
        .build()
}

#[tokio::test]
async fn security_groups_are_created_authorized_described_revoked_deleted_and_kept() {
    use aws_sdk_ec2::types::{IpPermission, ResourceType, Tag, TagSpecification, UserIdGroupPair};
    let mut b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let default_id = ec2.describe_security_groups().group_names("default").send().await.unwrap().security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();

    let created = ec2
        .create_security_group()
        .group_name("web")
        .description("web tasks")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let web = created.group_id().unwrap().to_string();
    assert!(web.starts_with("sg-") && web.len() == 20, "{web}");
    assert_eq!(created.tags()[0].value(), Some("blue"));
    let e = ec2.create_security_group().group_name("web").description("again").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.Duplicate");
    let e = ec2.create_security_group().group_name("default").description("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.Duplicate");
    let e = ec2.create_security_group().group_name("sg-web").description("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let e = ec2.create_security_group().group_name("x").description("x").vpc_id("vpc-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");

    // Two rules: tcp 8080 from a block, and everything from the default group.
    let from_default = IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&default_id).build())
        .build();
    let added = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .ip_permissions(from_default.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(added.r#return(), Some(true));
    let rules = added.security_group_rules();
    assert_eq!(rules.len(), 2);
    assert!(rules[0].security_group_rule_id().unwrap().starts_with("sgr-"));
    assert_eq!((rules[0].from_port(), rules[0].cidr_ipv4()), (Some(8080), Some("10.0.0.0/16")));
    assert_eq!(rules[1].referenced_group_info().and_then(|r| r.group_id()), Some(default_id.as_str()));
    let e = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.Duplicate");
    for bad in [web_rule(8080, "10.0.0.1/16"), web_rule(70000, "10.0.0.0/16")] {
        let e = ec2.authorize_security_group_ingress().group_id(&web).ip_permissions(bad).send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterValue");
    }
    let e = ec2
        .authorize_security_group_ingress()
        .group_id("sg-0123456789abcdef0")
        .ip_permissions(web_rule(80, "0.0.0.0/0"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");

    let tagged = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("tag:team").values("blue").build())
        .send()
        .await
        .unwrap();
    let [g] = tagged.security_groups() else { panic!("{tagged:?}") };
    assert_eq!((g.group_id(), g.group_name(), g.description()), (Some(web.as_str()), Some("web"), Some("web tasks")));
    let perms = g.ip_permissions();
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0].ip_ranges()[0].cidr_ip(), Some("10.0.0.0/16"));
    assert_eq!(perms[1].ip_protocol(), Some("-1"));
    assert_eq!(perms[1].user_id_group_pairs()[0].group_id(), Some(default_id.as_str()));
    assert_eq!(g.ip_permissions_egress()[0].ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
    let all = ec2.describe_security_groups().send().await.unwrap();
    assert_eq!(all.security_groups().len(), 2, "the default group is listed too");
    let default = &all.security_groups()[0];
    assert_eq!(default.group_name(), Some("default"));
    assert_eq!(default.ip_permissions()[0].user_id_group_pairs()[0].group_id(), Some(default_id.as_str()));
    for (name, value, count) in
        [("group-name", "web", 1), ("group-id", web.as_str(), 1), ("tag:team", "red", 0), ("vpc-id", "vpc-0", 0)]
    {
        let r = ec2
            .describe_security_groups()
            .filters(Filter::builder().name(name).values(value).build())
            .send()
            .await
            .unwrap();
        assert_eq!(r.security_groups().len(), count, "{name}={value}");
    }
    let sgr = ec2
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(&web).build())
        .send()
        .await
        .unwrap();
    assert_eq!(sgr.security_group_rules().len(), 3, "two in, one out");

    // A restart keeps the group and its rules.
    b.restart().await;
    let ec2 = self::ec2(&b).await;
    let g = ec2.describe_security_groups().group_ids(&web).send().await.unwrap();
    assert_eq!(g.security_groups()[0].ip_permissions().len(), 2);

    let revoked = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.r#return(), Some(true));
    let e = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.NotFound");
    let g = ec2.describe_security_groups().group_ids(&web).send().await.unwrap();
    assert_eq!(g.security_groups()[0].ip_permissions().len(), 1);

    // A group another group's rules refer to cannot go; the default group never can.
    let e = ec2.delete_security_group().group_id(&default_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "CannotDelete");
    let e = ec2.delete_security_group().group_name("default").send().await.unwrap_err();
    assert_eq!(error_code(&e), "CannotDelete");
    let db = ec2.create_security_group().group_name("db").description("db").send().await.unwrap();
    let db = db.group_id().unwrap();
    let from_web = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(5432)
        .to_port(5432)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&web).build())
        .build();
    ec2.authorize_security_group_ingress().group_id(db).ip_permissions(from_web).send().await.unwrap();
    let e = ec2.delete_security_group().group_id(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DependencyViolation");
    ec2.delete_security_group().group_name("db").send().await.unwrap();
    ec2.delete_security_group().group_id(&web).send().await.unwrap();
    let e = ec2.delete_security_group().group_id(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    let e = ec2.describe_security_groups().group_ids(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    assert_eq!(ec2.describe_security_groups().send().await.unwrap().security_groups().len(), 1);
}

#[tokio::test]
async fn the_aws_cli_manages_security_groups() {
    let b = crate::berth().await;
    let aws = |args: &[&str]| {
        let out = std::process::Command::new("aws").args(args).envs(b.cli_env()).output().expect("aws CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, id, err) = aws(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web tasks",
        "--query",
        "GroupId",
        "--output",
        "text",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(!ok && err.contains("InvalidPermission.Duplicate"), "{err}");
    let (ok, out, err) = aws(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        "Name=group-name,Values=web",
        "--query",
        "SecurityGroups[0].IpPermissions[0].[IpProtocol,FromPort,ToPort,IpRanges[0].CidrIp]",
        "--output",
        "text",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["tcp", "8080", "8080", "192.0.2.0/24"]);
    let (ok, _, err) = aws(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "50",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(!ok && err.contains("InvalidParameterValue"), "protocols Berth cannot enforce are refused: {err}");
    let (ok, _, err) = aws(&["ec2", "delete-security-group", "--group-id", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&["ec2", "delete-security-group", "--group-id", &id]);
    assert!(!ok && err.contains("InvalidGroup.NotFound"), "{err}");
}
