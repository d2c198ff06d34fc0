"""Where moto 5.2.5's EC2 differs from AWS in ways floatip depends on, and the fixes.

Each was checked against moto itself before patching (see the lab's tests/ec2.rs):
- AssignPrivateIpAddresses ignored AllowReassignment: the address ended up on BOTH ENIs, and
  without the flag an address held by another ENI was accepted instead of refused. AWS moves the
  address in the same call, or refuses with InvalidParameterValue.
- Any address was accepted, even outside the ENI's subnet. AWS refuses with InvalidParameterValue.
- UnassignPrivateIpAddresses of an address the ENI does not hold succeeded silently; AWS refuses,
  and floatip must see that to stay honest about who holds the address.
- AssignedPrivateIpAddresses in the reply listed every address of the ENI, not the ones assigned.
- Filter addresses.private-ip-address on DescribeNetworkInterfaces matched the primary address only,
  and network-interface.addresses.private-ip-address on DescribeInstances was not implemented (the
  server answered 500). On AWS both match secondary addresses too: that is how floatip finds the
  current holder of a floating IP.
- Elastic IPs: AssociateAddress ignored PrivateIpAddress (DescribeAddresses then showed the ENI's
  primary address), reassociation left the old ENI showing the public IP, an unassociated address
  answered NetworkInterfaceId "" and InstanceId "" instead of leaving them out, and moving a
  secondary address with AllowReassignment left its Elastic IP behind (AWS moves it along).
- Security groups: an ENI attached to an instance listed the instance's launch groups besides
  its own (on AWS each ENI has only its own, which is why floatip gives the floating ENI the
  primary ENI's groups), and CreateNetworkInterface and ModifyNetworkInterfaceAttribute accepted
  a group ID that does not exist (the first invented the group, the second broke every later
  DescribeNetworkInterfaces). AWS refuses with InvalidGroup.NotFound.
- CreateNetworkInterface without a PrivateIpAddress took any address of the subnet's CIDR at
  random: the network address, the VPC router's (.1), the two after it, the broadcast address,
  or one another ENI held. AWS reserves the first four and the last address of every subnet
  ("Subnet CIDR reserved IP addresses", VPC User Guide) and gives a free one. A node's floating
  ENI given 10.99.8.1 made the lab's demo fail once in CI: its agent could never route through
  the gateway, since that address was its own. A subnet with no free address left answers
  InsufficientFreeAddressesInSubnet, as AWS does.
- CreateNetworkInterface with a PrivateIpAddress another ENI of the subnet has made a second
  ENI with the same address (issue 18: Interface mode's ENI, made by whichever node's
  `floatip attach` comes first). AWS refuses with InvalidIPAddress.InUse (EC2 error codes
  reference: "The specified IP address is already in use").

- Elastic IPs, issue 15:
  - Public addresses came from anywhere (127.x.x.x); they come from 198.51.100.0/24 here (a
    documentation range) so lab traffic to an Elastic IP stays on well-known test addresses.
  - AllocateAddress ignored NetworkBorderGroup and DescribeAddresses never showed one. AWS keeps
    it and reports it; without it the group is the Region's name (AllocateAddress reference).
  - AllocateAddress ignored CustomerOwnedIpv4Pool (moto has no Outposts CoIP pools) and handed
    out a public address. Here any `ipv4pool-coip-...` pool allocates from 203.0.113.0/24, and
    AllocateAddress and DescribeAddresses show CustomerOwnedIp and CustomerOwnedIpv4Pool and NO
    PublicIp: the SDK's model documents PublicIp as "not available when using an address pool
    that you own" (AllocateAddressOutput.public_ip, aws-sdk-ec2).
  - AssociateAddress accepted an allocation and an ENI in different network border groups. AWS
    refuses ("You cannot associate an Elastic IP address with an interface in a different
    network border group", AssociateAddress reference); no public source names the error code,
    so InvalidParameterCombination stands in for it.
  - An association made through NetworkInterfaceId showed no InstanceId; AWS shows the
    instance the ENI is attached to, and it changes when the address moves to another ENI.
  - AssociateAddress without AllowReassociation moved an allocation bound to another address of
    the SAME ENI. AWS refuses any rebinding without the flag with Resource.AlreadyAssociated
    (moto did refuse it across ENIs).
- DescribeAvailabilityZones had no NetworkBorderGroup (AWS: the Region's name for its AZs, the
  Local Zone group for a Local Zone) and no Local Zones. Here us-west-2 has us-west-2-lax-1a
  (opted in, subnets can be created in it) and us-west-2-lax-1b (not opted in: listed only with
  AllAvailabilityZones, as AWS lists zones regardless of opt-in only then), both of group
  us-west-2-lax-1, ZoneType local-zone. A subnet created without a zone never lands in one.
- IPv6 (AssignIpv6Addresses has no reassignment on AWS): moto accepted an address outside the
  subnet's IPv6 blocks, an address another ENI holds (it then showed on both), and unassigning
  an address the ENI does not hold; it listed every address of the ENI as assigned; and the
  filter ipv6-addresses.ipv6-address of DescribeNetworkInterfaces was not implemented (500).
  AWS refuses the first three; InvalidParameterValue is used as for IPv4 (no public source
  names the IPv6 codes).

The error codes are AWS's (SDKs and floatip match on them); the message texts are written here.
"""

import ipaddress
import random

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import EC2ClientError, InvalidSecurityGroupNotFoundError
from moto.ec2.models.elastic_ip_addresses import ElasticAddress, ElasticAddressBackend
from moto.ec2.models.elastic_network_interfaces import NetworkInterface, NetworkInterfaceBackend
from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend, Zone
from moto.ec2.models.instances import Instance
from moto.ec2.responses.availability_zones_and_regions import AvailabilityZonesAndRegions
from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces


def _invalid(message):
    return EC2ClientError("InvalidParameterValue", message)


def _addresses(eni):
    return [item["PrivateIpAddress"] for item in eni.private_ip_addresses]


def _holder(backend, eni, address):
    """The other ENI in the same subnet that holds `address`, if any (VPCs may overlap)."""
    for other in backend.enis.values():
        if other is not eni and other.subnet.id == eni.subnet.id and address in _addresses(other):
            return other
    return None


_original_assign = NetworkInterfaceBackend.assign_private_ip_addresses


def assign_private_ip_addresses(
    self, eni_id, private_ip_addresses=None, secondary_ips_count=None, allow_reassignment=False
):
    eni = self.get_network_interface(eni_id)
    subnet = ipaddress.ip_network(eni.subnet.cidr_block)
    moves = []
    # Check every address before changing anything: AWS applies the call whole or not at all.
    for address in private_ip_addresses or []:
        try:
            inside = ipaddress.ip_address(address) in subnet
        except ValueError:
            raise _invalid(f"Invalid value '{address}' for IP address")
        if not inside:
            raise _invalid(f"Address {address} does not fall within the subnet's address range")
        holder = _holder(self, eni, address)
        if holder is None:
            continue
        if not allow_reassignment:
            raise _invalid(f"Address {address} is assigned to another interface {holder.id}")
        if holder.private_ip_address == address:
            raise _invalid(f"Address {address} is the primary address of {holder.id}")
        moves.append((holder, address))
    for holder, address in moves:
        holder.private_ip_addresses = [
            item for item in holder.private_ip_addresses if item["PrivateIpAddress"] != address
        ]
        for eip in self.addresses:
            if eip.eni is holder and eip.private_ip_address == address:
                holder.public_ip, eni.public_ip, eip.eni = None, eip.public_ip, eni
    return _original_assign(self, eni_id, private_ip_addresses, secondary_ips_count)


_original_unassign = NetworkInterfaceBackend.unassign_private_ip_addresses


def unassign_private_ip_addresses(self, eni_id, private_ip_address=None):
    eni = self.get_network_interface(eni_id)
    if any(address not in _addresses(eni) for address in private_ip_address or []):
        raise _invalid(f"Some of the specified addresses are not assigned to interface {eni.id}")
    return _original_unassign(self, eni_id, private_ip_address)


def assign_private_ip_addresses_response(self):
    eni_id = self._get_param("NetworkInterfaceId")
    count = self._get_int_param("SecondaryPrivateIpAddressCount", 0)
    wanted = self._get_param("PrivateIpAddresses", [])
    allow = self._get_bool_param("AllowReassignment", False)
    before = set(_addresses(self.ec2_backend.get_network_interface(eni_id)))
    eni = self.ec2_backend.assign_private_ip_addresses(eni_id, wanted, count, allow)
    assigned = wanted or [a for a in _addresses(eni) if a not in before]
    return ActionResult(
        {
            "NetworkInterfaceId": eni.id,
            "AssignedPrivateIpAddresses": [{"PrivateIpAddress": a} for a in assigned],
        }
    )


def unassign_private_ip_addresses_response(self):
    eni_id = self._get_param("NetworkInterfaceId")
    addresses = self._get_param("PrivateIpAddresses", [])
    self.ec2_backend.unassign_private_ip_addresses(eni_id, addresses)
    return EmptyResult()


_original_get_all_enis = NetworkInterfaceBackend.get_all_network_interfaces


def get_all_network_interfaces(self, eni_ids=None, filters=None):
    filters = dict(filters or {})
    wanted = filters.pop("addresses.private-ip-address", None)
    wanted_v6 = filters.pop("ipv6-addresses.ipv6-address", None)
    enis = _original_get_all_enis(self, eni_ids, filters)
    # Several values in one filter mean "any of them", as on AWS.
    if wanted is not None:
        enis = [eni for eni in enis if set(wanted) & set(_addresses(eni))]
    if wanted_v6 is not None:
        wanted_v6 = {ipaddress.ip_address(a) for a in wanted_v6}
        enis = [eni for eni in enis if wanted_v6 & set(_ipv6_of(eni))]
    return enis


_original_associate = ElasticAddressBackend.associate_address


def associate_address(self, *args, **kwargs):
    # Keyed by allocation: customer-owned allocations have no public address.
    before = {eip.allocation_id: eip.eni for eip in self.addresses}
    eip = _original_associate(self, *args, **kwargs)
    old = before.get(eip.allocation_id)
    if old is not None and old is not eip.eni:
        old.public_ip = None
    eip.floatip_private_ip = None  # the response handler sets it when the call named one
    return eip


_original_associate_response = ElasticIPAddresses.associate_address


def _check_association(self):
    """AWS's refusals moto lacks, checked before moto changes anything."""
    eni_id, allocation_id = self._get_param("NetworkInterfaceId"), self._get_param("AllocationId")
    if not eni_id or not allocation_id:
        return
    eni = self.ec2_backend.get_network_interface(eni_id)
    eip = self.ec2_backend.address_by_allocation([allocation_id])[0]
    eni_group = _zone_border_group(eni.subnet.availability_zone)
    if eip.network_border_group != eni_group:
        raise EC2ClientError(
            "InvalidParameterCombination",
            f"{allocation_id} is in network border group {eip.network_border_group}, "
            f"{eni_id} in {eni_group}",
        )
    private_ip = self._get_param("PrivateIpAddress") or eni.private_ip_address
    bound = eip.eni is not None and (eip.eni.id, _eip_private_ip(eip)) != (eni.id, private_ip)
    if bound and not self._get_bool_param("AllowReassociation", False):
        raise EC2ClientError(
            "Resource.AlreadyAssociated",
            f"{allocation_id} is already associated with {eip.eni.id} {_eip_private_ip(eip)}",
        )


def associate_address_response(self):
    _check_association(self)
    result = _original_associate_response(self)
    private_ip = self._get_param("PrivateIpAddress")
    if private_ip:
        for eip in self.ec2_backend.addresses:
            if eip.association_id == result.result["AssociationId"]:
                eip.floatip_private_ip = private_ip
    return result


def _eip_private_ip(eip):
    if eip.eni is None:
        return None
    return getattr(eip, "floatip_private_ip", None) or eip.eni.private_ip_address


def _eip_instance_id(eip):
    """The instance of the ENI it is bound to (AWS shows it for an ENI association too)."""
    instance = getattr(eip.eni, "instance", None) if eip.eni else eip.instance
    return instance.id if instance else None


_original_eip_filter = ElasticAddress.get_filter_value


def eip_filter_value(self, filter_name, method_name=None):
    if filter_name == "private-ip-address":
        return self.private_ip_address
    return _original_eip_filter(self, filter_name, method_name)


def _instance_private_addresses(instance):
    return [a for nic in instance.nics.values() for a in _addresses(nic)]


def _check_groups(backend, group_ids):
    for group_id in group_ids or []:
        if backend.get_security_group_from_id(group_id) is None:
            raise InvalidSecurityGroupNotFoundError(group_id)


_original_create_eni = NetworkInterfaceBackend.create_network_interface


def _free_private_address(backend, subnet):
    """An address AWS could give a new ENI of `subnet`: not one of the five it reserves, and
    held by no ENI."""
    if not hasattr(subnet, "cidr_block"):
        subnet = backend.get_subnet(subnet)
    net = ipaddress.ip_network(subnet.cidr_block)
    taken = {
        a for eni in backend.enis.values() if eni.subnet.id == subnet.id for a in _addresses(eni)
    }
    free = [
        str(net.network_address + i)
        for i in range(4, net.num_addresses - 1)
        if str(net.network_address + i) not in taken
    ]
    if not free:
        raise EC2ClientError(
            "InsufficientFreeAddressesInSubnet",
            f"The subnet {subnet.id} has no free address left.",
        )
    return random.choice(free)


def create_network_interface(
    self, subnet, private_ip_address, private_ip_addresses=None, group_ids=None, *args, **kwargs
):
    _check_groups(self, group_ids)
    if not private_ip_address and not private_ip_addresses:
        private_ip_address = _free_private_address(self, subnet)
    subnet_id = getattr(subnet, "id", subnet)
    for other in self.enis.values() if private_ip_address else []:
        if other.subnet.id == subnet_id and private_ip_address in _addresses(other):
            raise EC2ClientError(
                "InvalidIPAddress.InUse",
                f"The address {private_ip_address} is already in use by {other.id}.",
            )
    return _original_create_eni(
        self, subnet, private_ip_address, private_ip_addresses, group_ids, *args, **kwargs
    )


_original_modify_eni = NetworkInterfaceBackend.modify_network_interface_attribute


def modify_network_interface_attribute(self, eni_id, group_ids, *args, **kwargs):
    _check_groups(self, group_ids)
    return _original_modify_eni(self, eni_id, group_ids, *args, **kwargs)



# Elastic IP pools and network border groups (issue 15).

PUBLIC_POOL = ipaddress.ip_network("198.51.100.0/24")
COIP_POOL = ipaddress.ip_network("203.0.113.0/24")
REGION = "us-west-2"
LOCAL_ZONE_GROUP = "us-west-2-lax-1"
# (name, zone ID, opt-in status); the parent AZ of both is us-west-2a.
LOCAL_ZONES = [
    ("us-west-2-lax-1a", "usw2-lax1-az1", "opted-in"),
    ("us-west-2-lax-1b", "usw2-lax1-az2", "not-opted-in"),
]


def _free_address(backend, pool, taken_by):
    taken = {taken_by(eip) for eip in backend.addresses}
    for host in pool.hosts():
        if str(host) not in taken:
            return str(host)
    raise EC2ClientError("AddressLimitExceeded", f"no address left in {pool}")


def _zone_border_group(zone_name):
    for zones in RegionsAndZonesBackend.zones.values():
        for zone in zones:
            if zone.name == zone_name:
                return zone.network_border_group
    return None


_original_allocate = ElasticAddressBackend.allocate_address


def allocate_address(self, domain, address=None, tags=None):
    if address is None:
        address = _free_address(self, PUBLIC_POOL, lambda eip: eip.public_ip)
    return _original_allocate(self, domain, address=address, tags=tags)


def allocate_address_response(self):
    pool = self._get_param("CustomerOwnedIpv4Pool")
    if pool and not pool.startswith("ipv4pool-coip-"):
        raise _invalid(f"Invalid customer-owned address pool ID {pool}")
    result = _original_allocate_response(self)
    eip = self.ec2_backend.address_by_allocation([result.result["AllocationId"]])[0]
    eip.network_border_group = self._get_param("NetworkBorderGroup") or self.region
    if pool:
        coip = _free_address(self.ec2_backend, COIP_POOL, lambda e: e.customer_owned_ip)
        eip.public_ip, eip.customer_owned_ip, eip.customer_owned_ipv4_pool = None, coip, pool
    return ActionResult(
        {
            "AllocationId": eip.allocation_id,
            "Domain": eip.domain,
            "PublicIp": eip.public_ip,
            "NetworkBorderGroup": eip.network_border_group,
            "CustomerOwnedIp": eip.customer_owned_ip,
            "CustomerOwnedIpv4Pool": eip.customer_owned_ipv4_pool,
        }
    )


_original_allocate_response = ElasticIPAddresses.allocate_address
_original_describe_zones = RegionsAndZonesBackend.describe_availability_zones


def describe_availability_zones(
    self, filters=None, zone_names=None, zone_ids=None, all_zones=False, local_zones=False
):
    """`local_zones` only from DescribeAvailabilityZones itself: moto's own callers pick a
    zone for a subnet created without one, which on AWS is never a Local Zone."""
    zones = _original_describe_zones(self, filters, zone_names=zone_names, zone_ids=zone_ids)
    if not local_zones:
        return [z for z in zones if z.zone_type == "availability-zone"]
    return [z for z in zones if all_zones or z.opt_in_status != "not-opted-in"]


def describe_availability_zones_response(self):
    self.error_on_dryrun()
    zones = self.ec2_backend.describe_availability_zones(
        self._filters_from_querystring(),
        zone_names=self._get_param("ZoneNames", []),
        zone_ids=self._get_param("ZoneIds", []),
        all_zones=self._get_bool_param("AllAvailabilityZones", False),
        local_zones=True,
    )
    return ActionResult({"AvailabilityZones": zones})


def _install_eip_and_zone_patches():
    ElasticAddress.network_border_group = REGION
    ElasticAddress.customer_owned_ip = None
    ElasticAddress.customer_owned_ipv4_pool = None
    ElasticAddressBackend.allocate_address = allocate_address
    ElasticIPAddresses.allocate_address = allocate_address_response
    # A Region's own zones are their Region's border group; an attribute the serializer finds.
    Zone.network_border_group = property(lambda z: getattr(z, "floatip_group", z.region_name))
    Zone.group_name = property(lambda z: z.network_border_group)
    Zone.opt_in_status = property(lambda z: getattr(z, "floatip_opt_in", "opt-in-not-required"))
    zones = RegionsAndZonesBackend.zones.setdefault(REGION, [])
    for name, zone_id, opt_in in LOCAL_ZONES:
        if any(z.name == name for z in zones):
            continue
        zone = Zone(name=name, region_name=REGION, zone_id=zone_id, zone_type="local-zone")
        zone.floatip_group, zone.floatip_opt_in = LOCAL_ZONE_GROUP, opt_in
        zone.parent_zone_name = f"{REGION}a"
        zones.append(zone)
    RegionsAndZonesBackend.describe_availability_zones = describe_availability_zones
    AvailabilityZonesAndRegions.describe_availability_zones = describe_availability_zones_response


# IPv6: no reassignment, addresses inside the subnet's blocks, unassign only what is held.


def _ipv6_of(eni):
    return [ipaddress.ip_address(a) for a in eni.ipv6_addresses]


def _ipv6_blocks(eni):
    blocks = eni.subnet.ipv6_cidr_block_associations.values()
    return [ipaddress.ip_network(b["ipv6CidrBlock"]) for b in blocks if b.get("ipv6CidrBlock")]


_original_assign_ipv6 = NetworkInterfaceBackend.assign_ipv6_addresses
_original_unassign_ipv6 = NetworkInterfaceBackend.unassign_ipv6_addresses


def assign_ipv6_addresses(self, eni_id, ipv6_addresses=None, ipv6_count=None):
    eni = self.get_network_interface(eni_id)
    blocks = _ipv6_blocks(eni)
    for text in ipv6_addresses or []:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise _invalid(f"Invalid value '{text}' for IPv6 address")
        if not any(address in block for block in blocks):
            raise _invalid(f"Address {text} does not fall within the subnet's IPv6 ranges")
        for other in self.enis.values():
            if other is not eni and address in _ipv6_of(other):
                raise _invalid(f"Address {text} is assigned to another interface {other.id}")
    return _original_assign_ipv6(self, eni_id, ipv6_addresses, ipv6_count)


def unassign_ipv6_addresses(self, eni_id, ips=None):
    eni = self.get_network_interface(eni_id)
    held = _ipv6_of(eni)
    if any(ipaddress.ip_address(a) not in held for a in ips or []):
        raise _invalid(f"Some of the specified addresses are not assigned to interface {eni.id}")
    return _original_unassign_ipv6(self, eni_id, ips)


def assign_ipv6_addresses_response(self):
    eni_id = self._get_param("NetworkInterfaceId")
    before = set(self.ec2_backend.get_network_interface(eni_id).ipv6_addresses)
    eni = self.ec2_backend.assign_ipv6_addresses(
        eni_id,
        self._get_param("Ipv6Addresses", []),
        self._get_int_param("Ipv6AddressCount", 0),
    )
    assigned = [a for a in eni.ipv6_addresses if a not in before]
    return ActionResult({"AssignedIpv6Addresses": assigned, "NetworkInterfaceId": eni.id})


def _install_ipv6_patches():
    NetworkInterfaceBackend.assign_ipv6_addresses = assign_ipv6_addresses
    NetworkInterfaceBackend.unassign_ipv6_addresses = unassign_ipv6_addresses
    ElasticNetworkInterfaces.assign_ipv6_addresses = assign_ipv6_addresses_response


_install_eip_and_zone_patches()
_install_ipv6_patches()
NetworkInterfaceBackend.assign_private_ip_addresses = assign_private_ip_addresses
NetworkInterfaceBackend.unassign_private_ip_addresses = unassign_private_ip_addresses
NetworkInterfaceBackend.get_all_network_interfaces = get_all_network_interfaces
NetworkInterfaceBackend.create_network_interface = create_network_interface
NetworkInterfaceBackend.modify_network_interface_attribute = modify_network_interface_attribute
# Each ENI's own groups only, as on AWS, attached or not.
NetworkInterface.group_set = property(lambda eni: eni._group_set)
ElasticNetworkInterfaces.assign_private_ip_addresses = assign_private_ip_addresses_response
ElasticNetworkInterfaces.unassign_private_ip_addresses = unassign_private_ip_addresses_response
# DescribeInstances filters map a filter name to an attribute path; a list value matches when any
# element is among the filter's values.
Instance.floatip_private_addresses = property(_instance_private_addresses)
ec2_utils.filter_dict_attribute_mapping["network-interface.addresses.private-ip-address"] = (
    "floatip_private_addresses"
)
ElasticAddressBackend.associate_address = associate_address
ElasticIPAddresses.associate_address = associate_address_response
ElasticAddress.private_ip_address = property(_eip_private_ip)
ElasticAddress.get_filter_value = eip_filter_value
# None is left out of the reply, as AWS does for an address with no association.
ElasticAddress.network_interface_id = property(lambda eip: eip.eni.id if eip.eni else None)
ElasticAddress.instance_id = property(_eip_instance_id)
